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
Class score offsets: one number per model class, added to its score before the argmax.

A class-weighted loss moves each class's learnt score by about the log of its weight, which is
right for neither pixel accuracy nor mIoU: a rare class with a large weight is labelled well
beyond its area (CamVid's fence: recall 0.93-0.99 at precision 0.35-0.45, docs/results.md).
Offsets fitted on a labelled split's mIoU, in that dataset's classes, undo that where it costs
IoU. They are fitted on sampled pixels of a split the model has trained on (the held-out
splits stay for choosing and reporting) by coordinate ascent over a grid, and go into the
classifiers' biases (DepthGatedNet.offset_class_scores), so they cost nothing at run time.
"""
from __future__ import annotations

import numpy as np
import torch

from .evaluation import focal_or_none, scoring_classes
from .inference import Predictor
from .metrics import class_iou


def sample_scores(predictor: Predictor, dataset, pixels: int = 10000, seed: int = 0):
    """
    Return every model class's score and the scored class at random labelled pixels.

    (scores (N, C) float32, targets (N,) int64 in the dataset's scored classes, the model ->
    scored class lookup (the identity where the dataset has the model's classes), the scored
    classes' names). `pixels` per frame, drawn uniformly (class shares as the split's), the
    same on every run; scores as the Predictor computes them for its labels (its size, its
    loops).
    """
    to_dataset, names, scored = scoring_classes(dataset, predictor.info.class_names)
    if to_dataset is None:
        to_dataset = np.arange(scored)
    rng = np.random.default_rng(seed)
    scores, targets = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        p = predictor.predict(sample['rgb'], focal_px=focal_or_none(sample),
                              outputs=('scores',))
        labels = np.asarray(sample['labels']).ravel()
        at = rng.choice(labels.size, size=min(pixels, labels.size), replace=False)
        at = at[labels[at] < scored]          # unlabelled and ignored pixels score nothing
        scores.append(p.scores.reshape(p.scores.shape[0], -1)[:, at].T)
        targets.append(labels[at].astype(np.int64))
    if not scores or not sum(len(t) for t in targets):
        raise ValueError('no labelled pixels to fit class offsets on')
    return (np.concatenate(scores), np.concatenate(targets), to_dataset,
            names[:scored])


def mean_iou(predicted: torch.Tensor, targets: torch.Tensor, classes: int) -> float:
    """
    Return the mIoU depthgate-eval reports for these labels (`predicted` may hold `classes`).

    Id `classes` is a model class no dataset class covers: a wrong answer in no class's IoU.
    """
    k = classes + 1
    conf = torch.bincount(targets * k + predicted, minlength=k * k).view(k, k)
    return float(np.nanmean(class_iou(conf.numpy())[:classes]))


def fit_offsets(scores: np.ndarray, targets: np.ndarray, to_dataset: np.ndarray,
                classes: int, limit: float = 3.0, step: float = 0.25,
                passes: int = 3) -> tuple[np.ndarray, float, float]:
    """
    Return (offsets (C,), mIoU without them, mIoU with them) on the sampled pixels.

    Coordinate ascent: each model class's offset in turn takes the value of the grid
    -limit..limit that maximises mIoU with the others held, for `passes` rounds or until none
    moves. An offset moves only for a strict gain, so a class that changes nothing stays at 0.
    """
    s = torch.from_numpy(np.ascontiguousarray(scores, np.float32))
    t = torch.from_numpy(targets)
    lut = torch.from_numpy(np.asarray(to_dataset, np.int64))
    offsets = torch.zeros(s.shape[1])
    grid = torch.arange(-limit, limit + step / 2, step)
    before = best = mean_iou(lut[s.argmax(1)], t, classes)
    for _ in range(passes):
        moved = False
        for c in range(s.shape[1]):
            # class c wins a pixel where its shifted score beats every other shifted score
            others = s + offsets
            others[:, c] = -torch.inf
            top, arg = others.max(1)
            rest = lut[arg]
            for v in grid:
                if v == offsets[c]:
                    continue
                m = mean_iou(torch.where(s[:, c] + v > top, lut[c], rest), t, classes)
                if m > best + 1e-6:
                    best, offsets[c], moved = m, v, True
        if not moved:
            break
    return offsets.numpy(), before, best
