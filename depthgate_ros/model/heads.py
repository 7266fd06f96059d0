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
Depth branch on the gating module's input.

K-way depth-bin classification and log-depth regression (authors' layout: 1x1 512->128, 3x3
128->32, dropout, then the two predictors). The attention gate reuses the classification half with
no depth supervision.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .gating import conv_bn_relu


class DepthHead(nn.Module):
    def __init__(self, channels: int, num_bins: int, hidden: tuple[int, int] = (128, 32),
                 dropout: float = 0.1, regress: bool = True, init_depth_m: float = 10.0):
        super().__init__()
        self.trunk = nn.Sequential(
            conv_bn_relu(channels, hidden[0], 1),
            conv_bn_relu(hidden[0], hidden[1], 3),
            nn.Dropout2d(dropout),
        )
        self.classifier = nn.Conv2d(hidden[1], num_bins, 1)
        self.regressor = nn.Conv2d(hidden[1], 1, 3, padding=1) if regress else None
        if self.regressor is not None:
            # Start near a typical depth so the first log-depth losses are not dominated by
            # the offset.
            nn.init.constant_(self.regressor.bias, math.log(init_depth_m))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (bin logits (N, K, h, w), log depth (N, 1, h, w) or None)."""
        t = self.trunk(x)
        log_depth = self.regressor(t) if self.regressor is not None else None
        return self.classifier(t), log_depth
