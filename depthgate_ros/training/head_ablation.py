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
Paper Table 2 on equal terms: loop heads trained from scratch on one frozen network's features.

Every row (baseline, average, sensor, predicted, hybrid, attention, loops) is the same
`LoopHead` code as the full network, given the cached features F (stride 8 or 16) of one frozen
backbone and stem (feature_cache.py), trained for the same iterations on the same frames in
the same order from its own random start, with several seeds. Outputs are upsampled to the
label size exactly as DepthGatedNet does, so the losses are the training losses.

Evaluation keeps one confusion matrix per frame, so differences between rows can be paired
on the same frames and bootstrapped; it also splits IoU by distance, and records which branch
the gate chose at which true depth.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .feature_cache import CachedSplit
from ..metrics import SegmentationMetric
from ..model import DepthGatedNet, ModelConfig
from ..model.config import DEPTH_GATES
from ..model.depth_bins import quantize_depth
from ..model.losses import LossWeights, multitask_loss

UPSAMPLED = ('seg', 'depth_logits', 'log_depth')


@dataclass(frozen=True)
class Row:
    """One ablation row: the head's architecture, the gate it trains and tests with."""

    name: str
    model: dict[str, Any]
    gate: str | None = None            # None: the architecture's own gate_source
    loss: dict[str, Any] = field(default_factory=lambda: {
        'seg': 1.0, 'depth_reg': 0.1, 'depth_cls': 0.1})
    seeds: int = 3
    iterations: int | None = None      # None: the study's; more, to see whether a row converged


class _CachedFeatures(nn.Module):
    """Stands in for the backbone: its input is already the backbone's output (no detail map)."""

    def forward(self, x: torch.Tensor) -> tuple[None, None, None, torch.Tensor]:
        return None, None, None, x


def head_model(base: ModelConfig, row: Row) -> DepthGatedNet:
    """Build a DepthGatedNet whose backbone and stem are identities: it reads F directly."""
    cfg = replace(base, **{k: tuple(v) if isinstance(v, list) else v
                           for k, v in row.model.items()})
    net = DepthGatedNet(cfg)
    net.backbone, net.stem = _CachedFeatures(), nn.Identity()
    return net


def _upsampled(out: dict, size) -> dict:
    """Stride-8 outputs at the labels' size, as DepthGatedNet.iter_loops returns them."""
    return {**out, **{k: F.interpolate(out[k], size=size, mode='bilinear', align_corners=False)
                      for k in UPSAMPLED}}


def _forward(net: DepthGatedNet, batch: dict, row: Row) -> list[dict]:
    gate = row.gate or net.cfg.gate_source
    sensor = batch['sensor'] if gate in DEPTH_GATES else None
    outs = net(batch['features'], sensor, gate=gate)
    return [_upsampled(o, batch['labels'].shape[-2:]) for o in outs]


def train_head(base: ModelConfig, row: Row, seed: int, data: CachedSplit, *, iterations: int,
               batch_size: int, lr: float, cover: torch.Tensor | None = None,
               log=print) -> tuple[DepthGatedNet, float]:
    """
    Train one row from its seed's random start; returns the head and the minutes it took.

    `cover`: the training targets' cover matrix when the frames mix datasets (seg_cls_loss).
    """
    torch.manual_seed(seed)
    net = head_model(base, row)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    weights = LossWeights(**row.loss)
    # the same frames in the same order for every row and seed: only the start differs
    order = np.random.default_rng(0).permutation(
        np.resize(np.arange(len(data)), iterations * batch_size)).reshape(iterations, -1)
    net.train()
    t0 = time.perf_counter()
    for it, index in enumerate(order):
        for group in opt.param_groups:
            group['lr'] = lr * (1 - it / iterations) ** 0.9
        batch = data.batch(index)
        depth = batch['depth'] if weights.depth_reg or weights.depth_cls else None
        loss, _ = multitask_loss(_forward(net, batch, row), batch['labels'], depth,
                                 net.depth_edges, weights, cover)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (it + 1) % 50 == 0 or it + 1 == iterations:
            log(f'{row.name} seed {seed}: iteration {it + 1}/{iterations}, loss {loss.item():.3f}')
    return net.eval(), (time.perf_counter() - t0) / 60


def distance_bin(depth: np.ndarray, edges_m) -> np.ndarray:
    """0 .. len(edges): near to far; -1 where the truth has no depth (sky)."""
    out = np.digitize(depth, edges_m).astype(np.int64)
    return np.where(np.isfinite(depth), out, -1)


def evaluate_head(net: DepthGatedNet, row: Row, data: CachedSplit, *, num_classes: int,
                  distance_edges_m, forced_branch: int | None = None,
                  batch_size: int = 8, to_dataset: np.ndarray | None = None) -> dict:
    """
    Per frame: a confusion matrix, overall and per distance bin; gate choice per depth bin.

    `forced_branch`: every pixel uses that branch of the gating module (one-hot gate), to see
    what each branch has learnt on its own. `to_dataset`: model class -> the evaluated
    dataset's class (`num_classes` of them), for frames labelled in a dataset's own classes.
    """
    n_bins = len(distance_edges_m) + 1
    k = net.cfg.num_bins
    conf = np.zeros((len(data), n_bins + 1, num_classes, num_classes), np.int64)
    gate_hist = np.zeros((k, k), np.int64)          # [true depth bin, chosen branch]
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            index = np.arange(start, min(len(data), start + batch_size))
            batch = data.batch(index)
            if forced_branch is None:
                out = _forward(net, batch, row)[-1]
            else:
                out = _forced(net, batch, forced_branch)
            pred = out['seg'].argmax(1).numpy()
            if to_dataset is not None:
                pred = to_dataset[pred]
            gt = batch['labels'].numpy()
            depth = batch['depth'].numpy()
            for j, i in enumerate(index):
                where = distance_bin(depth[j], distance_edges_m)
                for b in range(-1, n_bins):
                    # the metric's own confusion, with pixels outside the bin ignored
                    m = SegmentationMetric(num_classes)
                    m.update(pred[j], gt[j] if b < 0 else np.where(where == b, gt[j],
                                                                   m.ignore_index))
                    conf[i, b + 1] = m.confusion
            if out['gate'] is not None:
                chosen = out['gate'].argmax(1).numpy()                      # (n, h, w)
                # the true depth at each cell's centre, in the gate's bin order (far = 0)
                cell = F.interpolate(batch['depth'].unsqueeze(1), size=chosen.shape[-2:],
                                     mode='nearest')[:, 0]
                true_bin = quantize_depth(cell, net.depth_edges).numpy()
                valid = true_bin >= 0
                np.add.at(gate_hist, (true_bin[valid], chosen[valid]), 1)
    return {'confusion': conf, 'gate_hist': gate_hist}


def _forced(net: DepthGatedNet, batch: dict, branch: int) -> dict:
    feat = batch['features']
    k = net.cfg.num_bins
    gate = torch.zeros(feat.shape[0], k, *feat.shape[-2:])
    gate[:, branch] = 1.0
    out = net.head(feat, 'sensor', gate)            # "sensor": the gate is given, not read
    return _upsampled(out, batch['labels'].shape[-2:])


def miou(confusion: np.ndarray, classes=None) -> float:
    """Return the mean IoU of a summed (C, C) confusion matrix over `classes` (default all)."""
    m = SegmentationMetric(confusion.shape[-1])
    m.confusion = confusion
    iou = np.array(m.compute()['iou'])
    if classes is not None:
        iou = iou[list(classes)]
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan


def paired_bootstrap(row_conf: list[np.ndarray], base_conf: list[np.ndarray], *,
                     draws: int = 1000, seed: int = 0, classes=None) -> dict:
    """
    Return mIoU(row) - mIoU(baseline), each averaged over its seeds, on resampled frames.

    Both rows are resampled with the same frame indices (paired), so the spread is what the
    choice of evaluation frames contributes; the seeds' spread is reported separately.
    """
    n = len(row_conf[0])
    rng = np.random.default_rng(seed)

    def diff(index):
        a = np.mean([miou(c[index].sum(0), classes) for c in row_conf])
        b = np.mean([miou(c[index].sum(0), classes) for c in base_conf])
        return a - b
    full = diff(np.arange(n))
    samples = np.array([diff(rng.integers(0, n, n)) for _ in range(draws)])
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return {'difference': float(full), 'ci95': [float(lo), float(hi)],
            'p_below_zero': float(np.mean(samples <= 0))}
