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
The paper's metrics, accumulated as streams (nothing per image is kept).

Segmentation: a confusion matrix gives per-class IoU, mean IoU and pixel accuracy; per-instance
true positives and false negatives weighted by the class's average instance size give
Cityscapes' instance-level iIoU (the paper's "nIoU"), the same definition as
`cityscapesscripts`' evaluation. Depth: threshold accuracies and errors over valid pixels,
pooled over every valid pixel seen.

Both metrics can be summed across DistributedDataParallel ranks with `all_reduce()`.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

IGNORE_INDEX = 255


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        # gloo/nccl reduce float64 fine; keep counts exact by reducing in float64.
        dist.all_reduce(t)
    return t


class SegmentationMetric:
    """
    Accumulate the confusion matrix and instance-weighted counts.

    `avg_instance_size` maps a thing class id to its dataset-wide average instance size in
    pixels (Cityscapes publishes one per class); classes absent from it get no iIoU.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 avg_instance_size: Mapping[int, float] | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.avg_instance_size = dict(avg_instance_size or {})
        self.confusion = np.zeros((num_classes, num_classes), np.int64)   # [gt, pred]
        # per class: weighted tp, weighted fn (for iIoU)
        self.instance = np.zeros((num_classes, 2), np.float64)

    def update(self, pred, gt, instances=None) -> None:
        """
        `pred`, `gt`: (H, W) class ids (gt may hold `ignore_index`).

        `instances`: (H, W) ints, 0 = no instance, any other value one instance (its class is gt's
        there).
        """
        pred, gt = _np(pred).astype(np.int64).ravel(), _np(gt).astype(np.int64).ravel()
        if pred.shape != gt.shape:
            raise ValueError(f'prediction has {pred.size} pixels, ground truth {gt.size}')
        keep = gt != self.ignore_index
        if np.any((gt[keep] < 0) | (gt[keep] >= self.num_classes)):
            raise ValueError(f'ground truth holds ids outside 0..{self.num_classes - 1} '
                             f'and {self.ignore_index}')
        if np.any((pred < 0) | (pred >= self.num_classes)):
            raise ValueError(f'prediction holds ids outside 0..{self.num_classes - 1}')
        self.confusion += np.bincount(gt[keep] * self.num_classes + pred[keep],
                                      minlength=self.num_classes ** 2).reshape(
                                          self.num_classes, self.num_classes)
        if instances is not None and self.avg_instance_size:
            self._update_instances(pred, gt, _np(instances).astype(np.int64).ravel())

    def _update_instances(self, pred, gt, inst) -> None:
        has = (inst > 0) & (gt != self.ignore_index)
        if not has.any():
            return
        ids, first, inverse, sizes = np.unique(inst[has], return_index=True,
                                               return_inverse=True, return_counts=True)
        cls = gt[has][first]
        hits = np.bincount(inverse, weights=(pred[has] == gt[has]).astype(np.float64),
                           minlength=len(ids))
        for c, size, tp in zip(cls, sizes, hits):
            avg = self.avg_instance_size.get(int(c))
            if avg is None:
                continue
            weight = avg / size
            self.instance[c, 0] += tp * weight
            self.instance[c, 1] += (size - tp) * weight

    def all_reduce(self) -> None:
        conf = _all_reduce(torch.from_numpy(self.confusion.astype(np.float64)))
        self.confusion = conf.round().to(torch.int64).numpy()
        self.instance = _all_reduce(torch.from_numpy(self.instance)).numpy()

    def compute(self) -> dict:
        conf = self.confusion.astype(np.float64)
        tp = np.diag(conf)
        fp = conf.sum(0) - tp
        fn = conf.sum(1) - tp
        iou = class_iou(conf)
        with np.errstate(divide='ignore', invalid='ignore'):
            # IoU alone hides which way a class fails: missed (recall) or spilt onto its
            # neighbours' pixels (precision), which class weights trade against each other
            recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
            precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
            itp, ifn = self.instance[:, 0], self.instance[:, 1]
            iiou = np.where(itp + fp + ifn > 0, itp / (itp + fp + ifn), np.nan)
        things = sorted(self.avg_instance_size)
        iiou_things = iiou[things] if things else np.array([])
        total = conf.sum()
        return {
            'iou': iou.tolist(),
            'recall': recall.tolist(),
            'precision': precision.tolist(),
            'miou': _nanmean(iou),
            'pixel_accuracy': float(tp.sum() / total) if total else math.nan,
            'iiou': {int(c): float(iiou[c]) for c in things},
            'miiou': _nanmean(iiou_things),
        }


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """Return each class's IoU of a [gt, pred] confusion matrix; NaN where it is neither."""
    conf = np.asarray(confusion, np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, tp / union, np.nan)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


class DepthMetric:
    """
    Depth metrics: delta < 1.25^k (k = 1, 2, 3), AbsRel, SqRel, RMSE, RMSE-log and log10.

    AbsRel, SqRel, RMSE, RMSE-log and log10, over the pixels where the ground truth is valid
    (finite, > 0); predictions must be positive there.

    `max_depth` leaves out ground truth beyond it, as the usual capped protocols do (80 m on
    driving data): a ground plane reaches kilometres at the horizon, and a handful of such
    pixels would otherwise decide the RMSE.
    """

    NAMES = ('delta1', 'delta2', 'delta3', 'abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'log10')

    def __init__(self, max_depth: float | None = None):
        if max_depth is not None and not max_depth > 0:
            raise ValueError(f'max_depth must be positive, got {max_depth}')
        self.max_depth = max_depth
        # count, then the running sums behind each metric
        self.sums = np.zeros(9, np.float64)

    def update(self, pred, gt) -> None:
        pred, gt = _np(pred).astype(np.float64).ravel(), _np(gt).astype(np.float64).ravel()
        if pred.shape != gt.shape:
            raise ValueError(f'prediction has {pred.size} pixels, ground truth {gt.size}')
        valid = np.isfinite(gt) & (gt > 0)
        if self.max_depth is not None:
            valid &= gt <= self.max_depth
        p, g = pred[valid], gt[valid]
        if np.any(~np.isfinite(p) | (p <= 0)):
            raise ValueError('predicted depth must be finite and positive where ground truth '
                             'is valid')
        ratio = np.maximum(p / g, g / p)
        err = p - g
        log_err = np.log(p) - np.log(g)
        self.sums += [g.size, (ratio < 1.25).sum(), (ratio < 1.25 ** 2).sum(),
                      (ratio < 1.25 ** 3).sum(), (np.abs(err) / g).sum(), (err ** 2 / g).sum(),
                      (err ** 2).sum(), (log_err ** 2).sum(), np.abs(log_err / np.log(10)).sum()]

    def all_reduce(self) -> None:
        self.sums = _all_reduce(torch.from_numpy(self.sums)).numpy()

    def compute(self) -> dict:
        n, *s = self.sums
        if n == 0:
            return {k: math.nan for k in self.NAMES} | {'pixels': 0}
        d1, d2, d3, abs_rel, sq_rel, sq, sq_log, log10 = (v / n for v in s)
        return {'delta1': d1, 'delta2': d2, 'delta3': d3, 'abs_rel': abs_rel,
                'sq_rel': sq_rel, 'rmse': math.sqrt(sq), 'rmse_log': math.sqrt(sq_log),
                'log10': log10, 'pixels': int(n)}


def percentiles(values, qs: Sequence[int] = (50, 95)) -> dict[str, float]:
    """
    Return {'p50': ..., 'p95': ...} of the finite values (latencies, say); NaN when there are none.

    The one place the package's latency summaries are computed.
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    return {f'p{q}': float(np.percentile(v, q)) if v.size else math.nan for q in qs}


def cityscapes_avg_instance_size(class_names: Sequence[str]) -> dict[int, float]:
    """Cityscapes' published average instance sizes, keyed by this model's class ids."""
    from .data.labels import CITYSCAPES_AVG_INSTANCE_SIZE
    return {i: CITYSCAPES_AVG_INSTANCE_SIZE[n] for i, n in enumerate(class_names)
            if n in CITYSCAPES_AVG_INSTANCE_SIZE}
