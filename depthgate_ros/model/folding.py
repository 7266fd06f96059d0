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
Inference only: BatchNorm folded into the convolution before it.

In eval mode a BatchNorm is a per-channel affine map, so conv -> BN is one conv with scaled
weights and a bias; what is saved is a pass over every activation map, which on a CPU is most of
a BatchNorm's cost (MobileNetV3 runs 60 of them, the first ones on 240 x 320 maps at 480 x 640).
ONNX export does the same. Only the `nn.Sequential(conv, BN, ...)` pattern is folded (this
package's conv_bn_relu and torchvision's Conv2dNormActivation); anything else is left as it is.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode conv -> BatchNorm pair of `model` in place; return `model`."""
    if model.training:
        raise ValueError('fold_batchnorm is for inference: call model.eval() first (folding '
                         'freezes the running statistics into the weights)')
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d \
                    and bn.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return model
