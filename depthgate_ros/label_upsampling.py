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
Labels of bilinearly upsampled class scores, without upsampling every score plane.

A bilinear output pixel is a convex combination of the four source cells around it. Where class c
has the top score in all four, it has the top score in any convex combination of them, so the
label is c. Only the cells whose four corners disagree (along boundaries: a few percent of a
street scene at stride 8) have their scores interpolated, as one small matrix product for all
such cells. Weights and clamping at the border are those of `F.interpolate(mode='bilinear',
align_corners=False)`; a whole scale factor makes every cell's block of output pixels the
same, so one weight matrix serves all blocks (other factors: resize the scores).
"""
from __future__ import annotations

import torch


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
    pos = (k - offset + 0.5) / f + 0.5
    return offset, (pos - pos.floor()).float()


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
    oy, wy = _block_weights(fy, scores.device)
    ox, wx = _block_weights(fx, scores.device)
    # Classes last (free for channels-last scores): an argmax across class planes is several
    # times slower than along contiguous rows.
    cells = scores.permute(1, 2, 0).contiguous()
    # Cell (i, j) of the (h + 1) x (w + 1) grid spans source rows i - 1..i and columns
    # j - 1..j, clamped to the map as interpolate clamps: the map with one replicated cell at
    # each border, done on the small label map and by index on scores (padding every score
    # plane cost more than the rest together).
    rows = (torch.arange(h + 2, device=scores.device) - 1).clamp_(0, h - 1)
    cols = (torch.arange(w + 2, device=scores.device) - 1).clamp_(0, w - 1)
    low = cells.argmax(-1).to(dtype)[rows[:, None], cols[None, :]]
    corner = low[:-1, :-1]
    mixed = (corner != low[1:, :-1]) | (corner != low[:-1, 1:]) | (corner != low[1:, 1:])
    # every cell's label over its fy x fx block; widening rows first, then copying whole rows,
    # is several times faster than one copy of a doubly broadcast view
    wide = corner[:, :, None].expand(h + 1, w + 1, fx).reshape(h + 1, 1, (w + 1) * fx)
    canvas = wide.expand(h + 1, fy, (w + 1) * fx).clone().view(h + 1, fy, w + 1, fx)
    qi, qj = mixed.nonzero(as_tuple=True)
    if qi.numel():
        r0, r1, c0, c1 = rows[qi], rows[qi + 1], cols[qj], cols[qj + 1]
        corners = torch.stack([cells[r0, c0], cells[r1, c0], cells[r0, c1], cells[r1, c1]])
        ay, ax = wy[:, None], wx[None, :]          # (fy, 1), (1, fx)
        weights = torch.stack([(1 - ay) * (1 - ax), ay * (1 - ax), (1 - ay) * ax, ay * ax], -1)
        # one matrix product for all mixed cells: (fy * fx, 4) @ (4, cells * C)
        blocks = weights.view(fy * fx, 4).to(scores.dtype) @ corners.view(4, -1)
        top = blocks.view(fy * fx, qi.numel(), c).argmax(-1).to(dtype)    # (fy * fx, cells)
        canvas[qi, :, qj, :] = top.t().reshape(-1, fy, fx)
    return canvas.view((h + 1) * fy, (w + 1) * fx)[oy:oy + height, ox:ox + width]
