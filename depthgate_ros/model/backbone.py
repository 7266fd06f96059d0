# Copyright 2026 depthgate_ros maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
ResNet backbone at output stride 8 (DeepLab style, paper section 5).

The last two stride-2 stages are replaced by atrous convolutions with dilation 2 and 4.
torchvision's `replace_stride_with_dilation` refuses BasicBlock (ResNet-18/34), so the
conversion is done here, the same way for every depth.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

from .state import state_mismatch

_OUT_CHANNELS = {'resnet18': 512, 'resnet34': 512, 'resnet50': 2048, 'resnet101': 2048}


def _dilate_stage(stage: nn.Sequential, dilation: int) -> None:
    """
    Turn a stride-2 ResNet stage into a stride-1 stage with the given dilation.

    The first block keeps half the dilation (it sits where the stride used to be), as in
    torchvision's own dilated Bottleneck stages.
    """
    for i, block in enumerate(stage):
        d = dilation // 2 if i == 0 else dilation
        for m in block.modules():
            if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                m.stride = (1, 1)
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                m.dilation, m.padding = (d, d), (d, d)


class Backbone(nn.Module):
    """ResNet trunk returning the stride-8 feature map of layer4."""

    def __init__(self, name: str = 'resnet18', frozen_bn: bool = True,
                 weights_path: str | Path | None = None):
        super().__init__()
        if name not in _OUT_CHANNELS:
            raise ValueError(f'unknown backbone {name!r}; choose one of {sorted(_OUT_CHANNELS)}')
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        # weights=None: nothing is ever downloaded; pretrained weights come from a local file.
        net = getattr(models, name)(weights=None, norm_layer=norm)
        if weights_path is not None:
            load_backbone_weights(net, weights_path)
        _dilate_stage(net.layer3, 2)
        _dilate_stage(net.layer4, 4)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = _OUT_CHANNELS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer2(self.layer1(x))
        return self.layer4(self.layer3(x))


def load_backbone_weights(net: nn.Module, path: str | Path) -> None:
    """Load a torchvision ImageNet state dict from a local file (the classifier is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'backbone weights file not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f'{path} does not hold a state dict (got {type(state).__name__})')
    # The ImageNet classifier is not part of the trunk; FrozenBatchNorm2d has no counter.
    net.fc = torch.nn.Identity()
    own = net.state_dict()
    state = {k: v for k, v in state.items()
             if k in own or not (k.startswith('fc.') or k.endswith('num_batches_tracked'))}
    problem = state_mismatch(net, state)
    if problem:
        raise ValueError(f'{path} does not match the {type(net).__name__} backbone: {problem}')
    net.load_state_dict(state)
