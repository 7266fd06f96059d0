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
Multi-task objective, paper Eq. 1.

    loss = sum_l  lambda_s[l] * seg_cls^l + lambda_r[l] * depth_reg^l + lambda_c[l] * depth_cls^l

seg_cls: cross-entropy, ignore index 255; with a `cover` matrix (targets x classes), the
negative log of the summed probability of the classes a target covers, so a dataset with
coarser classes (CamVid's "car": car, truck, bus, train) trains the same model.
depth_reg: 0.5 * mean over valid pixels of (pred - log d)^2 (authors' code). depth_cls:
K-way cross-entropy on the depth bins of valid pixels. Invalid ground-truth depth never
reaches the arithmetic, so its value cannot change the loss or its gradient.

distill (not in the paper): the cross-entropy of the student's class distribution against a
real-image teacher's (training/teacher.py), over the pixels that have a target. It differs from
KL(teacher || student) by the teacher's entropy, a constant, so the gradients are the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .depth_bins import quantize_depth, valid_depth_mask

IGNORE_INDEX = 255
# The terms multitask_loss reports, per loop ("name/loopN")
TERMS = ('seg_cls', 'depth_reg', 'depth_cls', 'distill')


def _per_loop(w: float | Sequence[float], loop: int, n_loops: int) -> float:
    """
    Pick loop `l`'s weight: a scalar applies to every loop.

    A sequence is indexed from the LAST loop backwards (authors' Cityscapes weights: 1 for the last
    loop, 0.5 for the previous, 0.1 earlier), its final value repeating for the earlier loops.
    """
    if isinstance(w, (int, float)):
        return float(w)
    back = n_loops - 1 - loop
    return float(w[min(back, len(w) - 1)])


def seg_cls_loss(logits: torch.Tensor, labels: torch.Tensor,
                 cover: torch.Tensor | None = None,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """
    Cross-entropy, or with `cover` (T, C) 0/1 that of the covered set of target T.

    `weight` (T,): a weight per target, the mean weighted as torch's cross-entropy weighs it.
    """
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0  # an all-ignore crop: zero, not NaN
    if cover is None:
        return F.cross_entropy(logits, labels.long(), weight=weight, ignore_index=IGNORE_INDEX)
    # log of a sum of probabilities, by logsumexp over the covered classes only: exact for a
    # one-class target (plain cross-entropy), and no log of an underflowed sum.
    log_p = logits.float().log_softmax(1)
    valid = labels != IGNORE_INDEX
    target = torch.where(valid, labels.long(), 0)
    mask = cover.bool()[target].permute(0, 3, 1, 2)          # (N, C, H, W): covered classes
    set_log_p = log_p.masked_fill(~mask, float('-inf')).logsumexp(1)
    if weight is None:
        return -(set_log_p[valid]).mean()
    w = weight[target][valid]
    return -(w * set_log_p[valid]).sum() / w.sum()


def depth_reg_loss(log_depth: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    valid = valid_depth_mask(depth)
    if not valid.any():
        return log_depth.sum() * 0.0
    target = torch.log(torch.where(valid, depth, torch.ones_like(depth)))
    err = (log_depth[:, 0] - target)[valid]
    return 0.5 * (err ** 2).mean()


def depth_cls_loss(depth_logits: torch.Tensor, depth: torch.Tensor,
                   edges: torch.Tensor) -> torch.Tensor:
    bins = quantize_depth(depth, edges)  # -1 where invalid
    if not (bins >= 0).any():
        return depth_logits.sum() * 0.0
    return F.cross_entropy(depth_logits, bins, ignore_index=-1)


def distill_loss(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy to `teacher` (N, C, H, W) probabilities; all-zero pixels are skipped."""
    valid = teacher.sum(1) > 0.5
    if not valid.any():
        return logits.sum() * 0.0
    log_p = logits.float().log_softmax(1)
    return -(teacher * log_p).sum(1)[valid].mean()


@dataclass
class LossWeights:
    seg: float | Sequence[float] = 1.0
    depth_reg: float | Sequence[float] = 0.0
    depth_cls: float | Sequence[float] = 0.0
    distill: float | Sequence[float] = 0.0

    def uses(self, name: str) -> bool:
        return _nonzero(getattr(self, name))


def _nonzero(w: float | Sequence[float]) -> bool:
    return any(v != 0 for v in ([w] if isinstance(w, (int, float)) else w))


def multitask_loss(outputs: list[dict], labels: torch.Tensor, depth: torch.Tensor | None,
                   edges: torch.Tensor, weights: LossWeights,
                   cover: torch.Tensor | None = None,
                   teacher: torch.Tensor | None = None,
                   class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """
    Eq. 1 over the loops in `outputs`.

    Returns (total, {"name/loopN": value} for logging).

    `labels` (N, H, W) int with 255 ignored; `depth` (N, H, W) metres, NaN/0 invalid, may be
    None when both depth weights are zero. `cover`, `class_weights`: see `seg_cls_loss`
    (`weight`). `teacher` (N, C, H, W) soft targets, needed when the distill weight is not
    zero.
    """
    if depth is None and (weights.uses('depth_reg') or weights.uses('depth_cls')):
        raise ValueError('depth losses have non-zero weights but no ground-truth depth was given')
    if teacher is None and weights.uses('distill'):
        raise ValueError('the distill loss has a non-zero weight but no teacher targets were '
                         'given')
    n = len(outputs)
    total = outputs[0]['seg'].new_zeros(())
    parts: dict[str, float] = {}
    for loop, out in enumerate(outputs):
        w_s, w_r, w_c, w_d = (_per_loop(w, loop, n) for w in (
            weights.seg, weights.depth_reg, weights.depth_cls, weights.distill))
        terms = {}
        if w_s:
            terms['seg_cls'] = (w_s, seg_cls_loss(out['seg'], labels, cover, class_weights))
        if w_r:
            terms['depth_reg'] = (w_r, depth_reg_loss(out['log_depth'], depth))
        if w_c:
            terms['depth_cls'] = (w_c, depth_cls_loss(out['depth_logits'], depth, edges))
        if w_d:
            terms['distill'] = (w_d, distill_loss(out['seg'], teacher))
        for name, (w, value) in terms.items():
            total = total + w * value
            parts[f'{name}/loop{loop}'] = float(value.detach())
    return total, parts
