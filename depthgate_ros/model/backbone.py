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
Backbones: a ResNet at stride 8 (paper section 5), 16 or 32, MobileNetV3-Large, or ESPNetv2.

ESPNetv2 (model/espnetv2.py) runs at stride 16 and loads its published Cityscapes weights.

MobileNetV3-Large runs at stride 16 or 32 (the fast preset), at any of torchvision's width
multipliers and optionally with its "reduced tail" (the last stage at half width, the
MobileNetV3 paper's setting for segmentation). For a ResNet at stride 8 the last
two stride-2 stages are replaced by atrous convolutions with dilation 2 and 4 (at 16, the last
one with dilation 2). torchvision's
`replace_stride_with_dilation` refuses BasicBlock (ResNet-18/34), so the conversion is done here,
the same way for every depth. Every backbone also returns its stride-4, stride-8 and stride-16
maps, for a detail path.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import BACKBONES
from .espnetv2 import espnetv2_state, ESPNetv2Encoder
from .state import state_mismatch

# channels of the ResNets' (stride-4, stride-8, stride-16, last) maps; a MobileNetV3's depend
# on its width
_CHANNELS = {'resnet18': (64, 128, 256, 512), 'resnet34': (64, 128, 256, 512),
             'resnet50': (256, 512, 1024, 2048), 'resnet101': (256, 512, 1024, 2048)}
# backbone_weights naming torchvision's ImageNet weights, for the backbones torchvision has
IMAGENET = 'imagenet'
IMAGENET_BACKBONES = tuple(b for b in BACKBONES if b != 'espnetv2')
# MobileNetV3-Large's feature blocks: [0, 4) end at stride 4, [4, 7) at 8, [7, 13) at 16, the
# rest at 32.
_MOBILENET_SPLITS = (4, 7, 13)


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
    """
    A torchvision trunk returning its stride-4, stride-8 and stride-16 maps and its last map.

    With a dilated stage the "stride-16" map is that stage's output at the output stride.
    """

    def __init__(self, name: str = 'resnet18', frozen_bn: bool = True,
                 weights_path: str | Path | None = None, output_stride: int = 8,
                 width_mult: float = 1.0, reduced_tail: bool = False, fine_stride: int = 4):
        """`fine_stride`: 2 returns the stride-2 map as the "fine" one (ESPNetv2 only)."""
        super().__init__()
        if fine_stride not in (2, 4) or (fine_stride == 2 and name != 'espnetv2'):
            raise ValueError(f'fine_stride {fine_stride}: 4, or 2 with espnetv2 (got {name})')
        self.fine_stride = fine_stride
        if name not in BACKBONES:
            raise ValueError(f'unknown backbone {name!r}; choose one of {sorted(BACKBONES)}')
        if name == 'espnetv2':
            if output_stride != 16 or reduced_tail:
                raise ValueError('espnetv2 runs at output stride 16 and has no reduced tail')
            self.encoder = ESPNetv2Encoder(width_mult)
            if weights_path is not None:
                _load_state(self.encoder, espnetv2_state(_read_state(weights_path, name)),
                            weights_path)
            if frozen_bn:
                _freeze_batchnorm(self.encoder)
            # the encoder ends at stride 16: its last map is its stride-16 map
            self.fine_channels, self.low_channels, self.mid_channels = \
                self.encoder.channels[1:]
            if fine_stride == 2:
                self.fine_channels = self.encoder.channels[0]
            self.out_channels = self.mid_channels
            return
        # torchvision takes a second to import (the node starts faster without it), and the
        # ESPNetv2 encoder is ours
        from torchvision import models
        from torchvision.ops import FrozenBatchNorm2d
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        if name.startswith('mobilenet'):
            if output_stride not in (16, 32):
                raise ValueError(f'{name} runs at output stride 16 or 32, not {output_stride}')
            # weights=None: nothing is ever downloaded; weights come from a local file.
            # None: torchvision's own BatchNorm settings for this network (eps 1e-3)
            net = models.mobilenet_v3_large(weights=None, dilated=output_stride == 16,
                                            width_mult=width_mult, reduced_tail=reduced_tail,
                                            norm_layer=FrozenBatchNorm2d if frozen_bn else None)
            if weights_path is not None:
                load_backbone_weights(net, weights_path, name)
            self.features = net.features      # torchvision's names: its state dicts load
            self.fine_channels, self.low_channels, self.mid_channels, self.out_channels = (
                self.features[i - 1].out_channels
                for i in (*_MOBILENET_SPLITS, len(self.features)))
            return
        if (width_mult, reduced_tail) != (1.0, False):
            raise ValueError(f'{name} has no width multiplier or reduced tail (MobileNetV3 does)')
        self.fine_channels, self.low_channels, self.mid_channels, self.out_channels = \
            _CHANNELS[name]
        if output_stride not in (8, 16, 32):
            raise ValueError(f'{name} runs at output stride 8, 16 or 32, not {output_stride}')
        net = getattr(models, name)(weights=None, norm_layer=norm)
        if weights_path is not None:
            load_backbone_weights(net, weights_path, name)
        if output_stride == 8:
            _dilate_stage(net.layer3, 2)
        if output_stride <= 16:
            _dilate_stage(net.layer4, 4 if output_stride == 8 else 2)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """
        Return (stride-4 map, stride-8 map, stride-16 map, last map at `output_stride`).

        The first is the stride-2 map with `fine_stride` 2.
        """
        if hasattr(self, 'encoder'):
            half, quarter, low, mid = self.encoder.levels(x)
            return half if self.fine_stride == 2 else quarter, low, mid, mid
        if hasattr(self, 'features'):
            a, b, c = _MOBILENET_SPLITS
            fine = self.features[:a](x)
            low = self.features[a:b](fine)
            mid = self.features[b:c](low)
            return fine, low, mid, self.features[c:](mid)
        fine = self.layer1(self.stem(x))
        low = self.layer2(fine)
        mid = self.layer3(low)
        return fine, low, mid, self.layer4(mid)


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every BatchNorm2d below `module` by a FrozenBatchNorm2d with its statistics."""
    from torchvision.ops import FrozenBatchNorm2d
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            for key in ('weight', 'bias', 'running_mean', 'running_var'):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def _read_state(path: str | Path, name: str) -> dict:
    """
    Read a state dict from a local file, or `imagenet`: torchvision's weights for `name`.

    `imagenet` takes the file from torch.hub's cache ($TORCH_HOME/hub/checkpoints) and
    downloads it there first only when it is absent: the user asked for it by name.
    """
    if str(path) == IMAGENET:
        if name not in IMAGENET_BACKBONES:
            raise ValueError(f'backbone_weights: imagenet is for the torchvision backbones '
                             f'{IMAGENET_BACKBONES}; give {name} a local file')
        from torchvision import models
        weights = models.get_model_weights(name).DEFAULT
        return weights.get_state_dict(progress=False, weights_only=True)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'backbone weights file not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f'{path} does not hold a state dict (got {type(state).__name__})')
    return state


def _load_state(net: nn.Module, state: dict, path: str | Path) -> None:
    problem = state_mismatch(net, state)
    if problem:
        raise ValueError(f'{path} does not match the {type(net).__name__} backbone: {problem}')
    net.load_state_dict(state)


def load_backbone_weights(net: nn.Module, path: str | Path, name: str) -> None:
    """Load torchvision ImageNet weights (a file, or `imagenet`); the classifier is ignored."""
    state = _read_state(path, name)
    # The ImageNet classifier is not part of the trunk; FrozenBatchNorm2d has no counter.
    head = 'fc' if hasattr(net, 'fc') else 'classifier'
    setattr(net, head, torch.nn.Identity())
    own = net.state_dict()
    state = {k: v for k, v in state.items()
             if k in own or not (k.startswith(head + '.') or k.endswith('num_batches_tracked'))}
    _load_state(net, state, path)
