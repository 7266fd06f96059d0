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
Depth bins: metric depth <-> the K pooling scales of the gating module.

Convention used everywhere in the package: a depth bin IS a branch index. Bin k selects the
branch with dilation `dilations[k]`, and dilations ascend, so the farthest depths fall in bin 0
(dilation 1) and the nearest in bin K-1 (dilation 16): the pooling field grows as depth shrinks
(paper section 3). The depth-classification head predicts these same indices, so its softmax
is directly a gate over the branches.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def valid_depth_mask(depth: torch.Tensor) -> torch.Tensor:
    """Mark valid depth: finite and > 0 (REP 118: NaN, and 0 for integer images, mean none)."""
    return torch.isfinite(depth) & (depth > 0)


def quantize_depth(depth: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Bin index per pixel (far -> 0, near -> K-1); -1 where depth is invalid."""
    k = edges.numel() + 1
    # The number of edges at or below each depth (searchsorted, right=True): 0 for the
    # nearest depths. Written as comparisons because ONNX has no searchsorted; K-1 is small.
    nearness = (depth.nan_to_num(0.0).unsqueeze(-1) >= edges.to(depth.dtype)).sum(-1)
    bins = (k - 1) - nearness
    return torch.where(valid_depth_mask(depth), bins, torch.full_like(bins, -1))


def soft_bins(depth: torch.Tensor, edges: torch.Tensor, sigma: float) -> torch.Tensor:
    """
    Bin probabilities (N, K, H, W) of depth (N, H, W) measured with log-depth std `sigma`.

    P(bin K-1) = P(d < e_0), ..., P(bin 0) = P(d >= e_{K-2}) under d ~ logN(log depth, sigma);
    invalid pixels get zeros. sigma 0 is the one-hot of quantize_depth.
    """
    valid = valid_depth_mask(depth)
    log_d = torch.where(valid, depth, torch.ones_like(depth)).log().unsqueeze(1)
    z = (edges.to(depth.dtype).log().view(1, -1, 1, 1) - log_d) / sigma
    below = 0.5 * (1 + torch.erf(z / math.sqrt(2.0)))          # P(d < e_j), ascending in j
    zeros, ones = torch.zeros_like(log_d), torch.ones_like(log_d)
    cdf = torch.cat([zeros, below, ones], 1)                   # P(d < e_j), j = -1 .. K-1
    near_to_far = cdf[:, 1:] - cdf[:, :-1]                     # bin K-1 first
    return near_to_far.flip(1) * valid.unsqueeze(1)


def sensor_evidence(depth: torch.Tensor, edges: torch.Tensor, size: tuple[int, int],
                    sigma: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Summarise sensor depth (N, 1, H, W) or (N, H, W) per feature cell of `size`.

    Returns (votes, hole): votes (N, K, h, w) is the fraction of the cell's pixels whose valid
    depth falls in bin k, hole (N, 1, h, w) the fraction without valid depth, so
    votes.sum(1) + hole = 1. Area averaging makes cells soft at bin boundaries, as the authors'
    resized one-hot stacks are; `sigma` > 0 spreads each pixel's vote over neighbouring bins
    (soft_bins).
    """
    if depth.dim() == 3:
        depth = depth.unsqueeze(1)
    k = edges.numel() + 1
    bins = quantize_depth(depth[:, 0], edges)
    valid = (bins >= 0).unsqueeze(1)
    if sigma > 0:
        votes = soft_bins(depth[:, 0].float(), edges, sigma)
    else:
        votes = F.one_hot(bins.clamp(min=0), k).permute(0, 3, 1, 2).to(torch.float32) * valid
    hole = (~valid).to(torch.float32)
    if votes.shape[-2:] != tuple(size):
        votes, hole = F.adaptive_avg_pool2d(votes, size), F.adaptive_avg_pool2d(hole, size)
    return votes, hole


def sensor_gate(depth: torch.Tensor, edges: torch.Tensor, size: tuple[int, int],
                sigma: float = 0.0) -> torch.Tensor:
    """
    Gate (N, K, h, w) from sensor depth alone.

    One-hot per valid pixel, uniform 1/K where depth is missing (paper section 6.3), averaged
    over each feature cell.
    """
    votes, hole = sensor_evidence(depth, edges, size, sigma)
    return votes + hole / votes.shape[1]


def hybrid_gate(votes: torch.Tensor, hole: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """
    Sensor bins where the sensor has depth, the network's predicted bins in its holes.

    Per feature cell the two are blended by the valid fraction: a cell with every pixel
    valid is exactly the sensor gate, a cell with none exactly `predicted` (N, K, h, w).
    """
    return votes + hole * predicted


def harden_gate(gate: torch.Tensor) -> torch.Tensor:
    """
    One-hot on each pixel's largest weight.

    Pixels whose gate is uniform (no valid depth at all) stay uniform, so missing depth still means
    the average of all branches.
    """
    k = gate.shape[1]
    top, idx = gate.max(1, keepdim=True)
    onehot = torch.zeros_like(gate).scatter_(1, idx, 1.0)
    return torch.where(top > 1.0 / k + 1e-6, onehot, gate)


def quantile_edges(depths, num_bins: int = 5) -> tuple[float, ...]:
    """
    Equal-count bin edges from a collection of depths (invalid values are ignored).

    The authors chose bins holding roughly equal pixel counts; quantiles do that. Any monotone
    re-parametrisation (log depth, disparity) gives the same split, so metric depth is used.
    """
    d = np.asarray(depths, dtype=np.float64).ravel()
    d = d[np.isfinite(d) & (d > 0)]
    if d.size < num_bins:
        raise ValueError(f'need at least {num_bins} valid depths to compute {num_bins} bins, '
                         f'got {d.size}')
    edges = np.quantile(d, np.arange(1, num_bins) / num_bins)
    if np.any(np.diff(edges) <= 0):
        raise ValueError(f'depths are too concentrated for {num_bins} distinct bins: '
                         f'quantile edges {edges.tolist()}')
    return tuple(float(e) for e in edges)


def disparity_to_depth(disparity, focal_px: float, baseline_m: float):
    """
    Convert disparity to depth = f * B / d; non-positive or non-finite d -> NaN (invalid).

    Works on numpy arrays and torch tensors alike.
    """
    if focal_px <= 0 or baseline_m <= 0:
        raise ValueError(f'focal length and baseline must be positive, got f={focal_px}, '
                         f'B={baseline_m}')
    if isinstance(disparity, torch.Tensor):
        d = disparity.float()
        ok = torch.isfinite(d) & (d > 0)
        return torch.where(ok, focal_px * baseline_m / torch.where(ok, d, 1.0),
                           torch.full_like(d, float('nan')))
    d = np.asarray(disparity, dtype=np.float32)
    ok = np.isfinite(d) & (d > 0)
    out = np.full(d.shape, np.nan, dtype=np.float32)
    out[ok] = np.float32(focal_px * baseline_m) / d[ok]
    return out
