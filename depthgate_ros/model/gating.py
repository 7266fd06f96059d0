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
Depth-aware gating module (paper section 3, supplementary Table 1).

K parallel 3x3 atrous branches, one per pooling scale, mixed per pixel by a gate of shape
(N, K, H, W) that sums to 1 over K, then a 1x1 block (authors' layout: branches with BN+ReLU,
gating sum, 1x1 conv + BN + ReLU).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .sparse_gating import gate_density, sparse_branch_sum


def conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class AtrousBranches(nn.Module):
    """
    The K branches.

    `tied` shares one 3x3 kernel (scale-invariant processing); each branch keeps its own BatchNorm
    because the statistics of a dilated response depend on the dilation. `depthwise` gives each
    branch one 3x3 kernel per channel instead of a full one.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...], tied: bool = False,
                 depthwise: bool = False):
        super().__init__()
        self.dilations = tuple(dilations)
        self.tied = tied
        self.groups = channels if depthwise else 1
        n_kernels = 1 if tied else len(self.dilations)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(channels, channels // self.groups, 3, 3))
            for _ in range(n_kernels))
        for w in self.weights:
            nn.init.kaiming_normal_(w, mode='fan_out', nonlinearity='relu')
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in self.dilations)

    def __len__(self) -> int:
        return len(self.dilations)

    def branch(self, x: torch.Tensor, k: int) -> torch.Tensor:
        d = self.dilations[k]
        w = self.weights[0 if self.tied else k]
        return F.relu(self.norms[k](F.conv2d(x, w, padding=d, dilation=d, groups=self.groups)))


class DepthGatingModule(nn.Module):
    """
    Depth-gated atrous branches (paper section 3.2).

    `sparse` (inference only): with a hard gate, evaluate each branch only where it is selected
    (see sparse_gating.py). Used when the gate needs at most `SPARSE_MAX_DENSITY` branches per
    pixel on average, where it pays for its gathers; soft gates, training and export stay dense.
    """

    SPARSE_MAX_DENSITY = 2.5

    def __init__(self, channels: int, dilations: tuple[int, ...], tied: bool = False,
                 depthwise: bool = False):
        super().__init__()
        self.branches = AtrousBranches(channels, dilations, tied, depthwise)
        self.fuse = conv_bn_relu(channels, channels, 1)
        self.sparse = True

    @property
    def num_branches(self) -> int:
        return len(self.branches)

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        if gate.shape[1] != self.num_branches or gate.shape[-2:] != x.shape[-2:]:
            raise ValueError(f'gate of shape {tuple(gate.shape)} does not fit '
                             f'{self.num_branches} branches over features {tuple(x.shape)}')
        if self._use_sparse(gate):
            return self.fuse(sparse_branch_sum(self.branches, x, gate))
        # Accumulating one branch at a time keeps a single extra feature map alive instead of K.
        out = None
        for k in range(self.num_branches):
            y = gate[:, k:k + 1] * self.branches.branch(x, k)
            out = y if out is None else out + y
        return self.fuse(out)

    def _use_sparse(self, gate: torch.Tensor) -> bool:
        # Depthwise branches cost little dense, and the gather-GEMM is for full kernels.
        if not self.sparse or self.training or torch.is_grad_enabled() \
                or self.branches.groups > 1:
            return False
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling() \
                or torch.onnx.is_in_onnx_export():
            return False                  # data-dependent shapes: export the dense graph
        return gate_density(gate) <= self.SPARSE_MAX_DENSITY


def average_gate(features: torch.Tensor, num_branches: int) -> torch.Tensor:
    n, _, h, w = features.shape
    return features.new_full((n, num_branches, h, w), 1.0 / num_branches)
