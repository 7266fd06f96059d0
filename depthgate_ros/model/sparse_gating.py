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
Sparse evaluation of the gating module for hard gates (inference only).

With a one-hot gate (sensor depth, or the argmax of predicted depth) each pixel needs one
dilated branch, not K. Each branch is evaluated only at the pixels whose gate weight for it
is non-zero: the nine taps of its 3x3 dilated kernel are gathered from a zero-padded map
(an im2col restricted to those pixels), multiplied by the kernel as one GEMM, then batch-norm
(eval statistics), ReLU and the gate weight are applied and the result is scattered back.
Pixels with a soft gate (e.g. uniform where sensor depth is missing) appear in every
branch's set, so the output equals the dense module's for any gate; the saving is
proportional to how one-hot the gate is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gate_density(gate: torch.Tensor) -> float:
    """Mean number of branches a pixel needs: 1 for a one-hot gate, K for a soft one."""
    return float((gate != 0).sum()) / max(1, gate[:, 0].numel())


def _tap_offsets(width: int, dilation: int) -> torch.Tensor:
    """Flat offsets of the 3x3 taps in a map `width` wide, in the weight's (ky, kx) order."""
    d = dilation
    return torch.tensor([dy * width + dx for dy in (-d, 0, d) for dx in (-d, 0, d)])


def _folded(branches, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Branch k's kernel as a (9*Cin, Cout) GEMM operand in the gather's (tap, channel) order.

    With its eval BatchNorm folded in, and the bias. Cached until a parameter changes, so the
    reordering copy is paid once, not per frame.
    """
    kernel = branches.weights[0 if branches.tied else k]
    bn = branches.norms[k]
    tensors = (kernel, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    key = tuple((t.data_ptr(), t._version) for t in tensors)
    cache = branches.__dict__.setdefault('_sparse_cache', {})
    if k not in cache or cache[k][0] != key:
        with torch.no_grad():
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            w = (kernel * scale.view(-1, 1, 1, 1)).permute(2, 3, 1, 0).reshape(-1, len(scale))
            bias = bn.bias - bn.running_mean * scale
        cache[k] = (key, w.contiguous(), bias)
    return cache[k][1], cache[k][2]


def _workspace(branches, name: str, numel: int, like: torch.Tensor) -> torch.Tensor:
    """
    Return a buffer kept between calls.

    A fresh multi-megabyte tensor per frame costs more in page faults than the gather that fills
    it.
    """
    cache = branches.__dict__.setdefault('_sparse_ws', {})
    buf = cache.get(name)
    if buf is None or buf.numel() < numel or buf.dtype != like.dtype or \
            buf.device != like.device:
        buf = cache[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buf[:numel]


def sparse_branch_sum(branches, x: torch.Tensor,
                      gate: torch.Tensor) -> torch.Tensor:
    """
    `branches`: gating.AtrousBranches. sum_k gate[:, k] * branch_k(x).

    Computing branch k only where gate[:, k] != 0. Equals the dense sum to float tolerance;
    BatchNorm must be in eval mode.
    """
    if branches.training:
        raise RuntimeError("sparse gating uses BatchNorm's running statistics: eval mode only")
    n, c, h, w = x.shape
    pad = max(branches.dilations)
    hp, wp = h + 2 * pad, w + 2 * pad
    # Pixel-major (N*Hp*Wp, C): a tap gather copies whole rows, and the padding supplies the
    # zeros a dense conv would read outside the map.
    # (padding NHWC keeps rows contiguous; a permuted view would gather with stride H*W)
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pad, pad, pad, pad)).reshape(n * hp * wp, c)
    # flat index of every (n, y, x) centre in the padded map, in the output's order
    ys = torch.arange(h, device=x.device).view(1, h, 1) + pad
    xs = torch.arange(w, device=x.device).view(1, 1, w) + pad
    ns = torch.arange(n, device=x.device).view(n, 1, 1) * (hp * wp)
    centres = (ns + ys * wp + xs).reshape(-1)
    weights = gate.permute(1, 0, 2, 3).reshape(len(branches), -1)       # (K, N*H*W)
    # One pass over the gate for every branch's pixel list (nonzero sorts by branch).
    branch_of, pixel = torch.nonzero(weights, as_tuple=True)
    counts = torch.bincount(branch_of, minlength=len(branches)).tolist()
    # One-hot everywhere: each pixel is written once and needs no weighting or summing.
    one_hot = pixel.numel() == weights.shape[1] and bool((weights[branch_of, pixel] == 1).all())
    # one-hot: every pixel is written exactly once, so no zero fill is needed
    out = x.new_empty(n * h * w, c) if one_hot else x.new_zeros(n * h * w, c)
    for k, (d, sel) in enumerate(zip(branches.dilations, torch.split(pixel, counts))):
        if sel.numel() == 0:
            continue
        p = sel.numel()
        taps = centres[sel].unsqueeze(1) + _tap_offsets(wp, d).to(x.device).unsqueeze(0)
        cols = _workspace(branches, 'cols', p * 9 * c, x).view(p * 9, c)
        torch.index_select(xp, 0, taps.reshape(-1), out=cols)           # im2col rows
        kernel, bias = _folded(branches, k)
        y = _workspace(branches, 'y', p * c, x).view(p, c)
        torch.addmm(bias, cols.view(p, 9 * c), kernel, out=y).relu_()
        if one_hot:
            out.index_copy_(0, sel, y)
        else:
            # Rows of one branch are distinct pixels: gather-add-copy beats index_add_ on CPU.
            y.mul_(weights[k, sel].unsqueeze(1))
            out.index_copy_(0, sel, out.index_select(0, sel).add_(y))
    # NCHW shape in channels-last memory: the 1x1 fuse conv reads it as is, no transpose copy
    return out.view(n, h, w, c).permute(0, 3, 1, 2)
