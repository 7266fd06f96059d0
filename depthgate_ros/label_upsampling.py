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
Bilinear enlargement as `F.interpolate(mode='bilinear', align_corners=False)` does it, cheaper.

Labels of upsampled class scores, without upsampling every score plane: a bilinear output
pixel is a convex combination of the four source cells around it. Where class c has the top
score in all four, it has the top score in any convex combination of them, so the label is c.
Only the cells whose four corners disagree (along boundaries: a few percent of a street scene
at stride 8) have their scores interpolated, as one small matrix product for all such cells.
Weights and clamping at the border are those of interpolate; a whole scale factor makes every
cell's block of output pixels the same, so one weight matrix serves all blocks (other factors:
resize the scores).

Planes (depth): interpolate's weights as two small matrices, the enlargement as two matrix
products, which run as GEMMs where interpolate's kernel walks every output pixel.
"""
from __future__ import annotations

from functools import lru_cache

import torch


def _source_positions(i: torch.Tensor, n_in: int, n_out: int) -> torch.Tensor:
    """Where output pixels `i` sit on the source grid, before clamping: interpolate's rule."""
    return (i + 0.5) * n_in / n_out - 0.5


def integer_factor(low: tuple[int, int], size: tuple[int, int]) -> bool:
    """Return whether `size` enlarges `low` by a whole factor along both axes."""
    return all(n > m and n % m == 0 for m, n in zip(low, size))


def _block_weights(f: int, device) -> tuple[int, torch.Tensor]:
    """
    Return (offset, weights) of one cell's f output pixels along an axis.

    Output pixel i sits at source position (i + 0.5) / f - 0.5, that is (i + 0.5) / f + 0.5 in
    the grid padded with one replicated cell. As canvas pixel i + offset it lies in padded cell
    (i + offset) // f, at weight `weights[(i + offset) % f]` of that cell's second corner: every
    cell owns a run of f canvas pixels.
    """
    offset = (f + 1) // 2
    k = torch.arange(f, device=device, dtype=torch.float64)
    pos = _source_positions(k - offset, 1, f) + 1
    return offset, (pos - pos.floor()).float()


@lru_cache(maxsize=16)
def bilinear_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """
    Return the (n_out, n_in) float32 matrix that enlarges a signal as interpolate does.

    Shared between calls: never modify it in place.
    """
    if n_out < n_in:
        raise ValueError(f'{n_in} -> {n_out} is not an enlargement (shrinking needs antialiasing)')
    pos = _source_positions(torch.arange(n_out, dtype=torch.float64), n_in, n_out).clamp_(min=0)
    first = pos.floor().long()
    frac = pos - first
    rows = torch.arange(n_out)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m.index_put_((rows, first), 1 - frac, accumulate=True)
    m.index_put_((rows, (first + 1).clamp_(max=n_in - 1)), frac, accumulate=True)
    return m.float().to(device)


def upsampled_planes(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Return (..., h, w) `x` bilinearly enlarged to `size` (as interpolate), contiguous."""
    height, width = (int(v) for v in size)
    rows = bilinear_matrix(x.shape[-2], height, x.device)
    cols = bilinear_matrix(x.shape[-1], width, x.device)
    # the narrow product first: (h, w) @ (w, W), then (H, h) @ (h, W); a single plane as a plain
    # matrix product (the batched one takes twice as long)
    planes = x.reshape(-1, x.shape[-2], x.shape[-1]) @ cols.to(x.dtype).t()
    rows = rows.to(x.dtype)
    out = rows @ planes[0] if len(planes) == 1 else rows @ planes
    return out.view(*x.shape[:-2], height, width)


@lru_cache(maxsize=16)
def _plan(h: int, w: int, fy: int, fx: int, device: torch.device):
    """
    Return what one score grid and factor always need, made once (shared: do not modify).

    Cell (i, j) of the (h + 1) x (w + 1) grid spans source rows i - 1..i and columns j - 1..j,
    clamped to the map as interpolate clamps: the map with one replicated cell at each border,
    done by index (padding every score plane cost more than the rest together). Returns the
    canvas offsets, the flat source index of every cell of the padded (h + 2) x (w + 2) grid,
    the four corners' flat indices of every cell (4, h + 1, w + 1), and each block pixel's
    weights of those corners (fy * fx, 4).
    """
    oy, wy = _block_weights(fy, device)
    ox, wx = _block_weights(fx, device)
    rows = (torch.arange(h + 2, device=device) - 1).clamp_(0, h - 1)
    cols = (torch.arange(w + 2, device=device) - 1).clamp_(0, w - 1)
    padded = rows[:, None] * w + cols[None, :]
    corners = torch.stack([padded[:-1, :-1], padded[1:, :-1], padded[:-1, 1:], padded[1:, 1:]])
    ay, ax = wy[:, None], wx[None, :]          # (fy, 1), (1, fx)
    weights = torch.stack([(1 - ay) * (1 - ax), ay * (1 - ax), (1 - ay) * ax, ay * ax], -1)
    return oy, ox, padded, corners, weights.view(fy * fx, 4)


def upsampled_labels(scores: torch.Tensor, size: tuple[int, int],
                     dtype: torch.dtype = torch.long) -> torch.Tensor:
    """
    Return argmax over classes of `scores` (C, h, w) bilinearly resized to `size`: (H, W) `dtype`.

    The labels of `F.interpolate(scores[None], size, mode='bilinear').argmax(1)[0]`, except where
    two classes tie within float rounding; `size` must be an integer_factor of (h, w). A narrow
    `dtype` (uint8 for up to 256 classes) is worth asking for: the full-size label map is then
    written in one eighth of the bytes.
    """
    c, h, w = scores.shape
    height, width = (int(v) for v in size)
    if not integer_factor((h, w), (height, width)):
        raise ValueError(f'{height}x{width} is not a whole multiple of the scores at {h}x{w}')
    fy, fx = height // h, width // w
    oy, ox, padded, corners, weights = _plan(h, w, fy, fx, scores.device)
    # Classes last (free for channels-last scores): an argmax across class planes is several
    # times slower than along contiguous rows.
    cells = scores.permute(1, 2, 0).contiguous().view(h * w, c)
    # max().indices: argmax's first-maximum rule, a fifth faster on a CPU
    low = cells.max(-1).indices.to(dtype)[padded]
    corner = low[:-1, :-1]
    mixed = (corner != low[1:, :-1]) | (corner != low[:-1, 1:]) | (corner != low[1:, 1:])
    # every cell's label over its fy x fx block; widening rows first, then copying whole rows,
    # is several times faster than one copy of a doubly broadcast view
    wide = corner[:, :, None].expand(h + 1, w + 1, fx).reshape(h + 1, 1, (w + 1) * fx)
    canvas = wide.expand(h + 1, fy, (w + 1) * fx).clone().view(h + 1, fy, w + 1, fx)
    qi, qj = mixed.nonzero(as_tuple=True)
    if qi.numel():
        corner_scores = cells[corners[:, qi, qj]]     # (4, cells, C)
        # one matrix product for all mixed cells: (fy * fx, 4) @ (4, cells * C)
        blocks = weights.to(scores.dtype) @ corner_scores.view(4, -1)
        top = blocks.view(fy * fx, qi.numel(), c).max(-1).indices.to(dtype)   # (fy*fx, cells)
        canvas[qi, :, qj, :] = top.t().reshape(-1, fy, fx)
    return canvas.view((h + 1) * fy, (w + 1) * fx)[oy:oy + height, ox:ox + width]
