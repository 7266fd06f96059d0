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
Evaluate a Predictor on a dataset: segmentation metrics per loop, depth metrics, latency.

Used by training's periodic validation and by `depthgate-eval`, so both report the same
numbers through the same pre- and post-processing as deployment.
"""
from __future__ import annotations

import time

import numpy as np

from .data.labels import cover_matrix, IGNORE_ID, model_to_dataset
from .data.sensors import measure, sample_focal, Sensor, sensor_from_config
from .inference import Predictor
from .metrics import cityscapes_avg_instance_size, DepthMetric, percentiles, SegmentationMetric


def evaluate_dataset(predictor: Predictor, dataset, *, gate: str | None = None,
                     sensor_depth: str | dict | None = None, max_frames: int | None = None,
                     max_depth: float | None = None, on_frame=None) -> dict:
    """
    Evaluate a Predictor on a dataset: segmentation and depth metrics.

    `sensor_depth`: None runs monocular; `exact` hands each sample's ground-truth depth to the
    Predictor (the paper's "gt-depth" rows); a sensor (a name of data.sensors.CHOICES or a
    config dict) hands it what that sensor would measure of the ground truth (seeded per frame,
    so runs repeat). The depth metrics always score against the ground truth, capped at
    `max_depth`.
    `on_frame(i, sample, predictions)` sees every frame (for pictures), with the depth the gate
    was given as sample['sensor_depth'].
    """
    sensor: Sensor | None = sensor_from_config(sensor_depth) if sensor_depth else None
    to_dataset, names, scored = scoring_classes(dataset, predictor.info.class_names)
    sizes = cityscapes_avg_instance_size(names) if len(names) == 19 else {}
    loops = predictor.loops
    seg = [SegmentationMetric(len(names), avg_instance_size=sizes) for _ in range(loops + 1)]
    depth = [DepthMetric(max_depth) for _ in range(loops + 1)]
    latencies, valid_fraction = [], []
    n = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    for i in range(n):
        sample = dataset[i]
        gt_depth = sample.get('depth')
        given = None
        if sensor_depth:
            if gt_depth is None:
                raise ValueError(f"sample {sample.get('name', i)} has no depth to measure")
            given = gt_depth if sensor is None else measure(
                sensor, gt_depth, sample_focal(sample), np.random.default_rng((17, i)),
                sample['rgb'])
            valid_fraction.append(float(np.mean(np.isfinite(given) & (given > 0))))
        t0 = time.perf_counter()
        preds = predictor.predict_loops(sample['rgb'], given, gate=gate,
                                        focal_px=focal_or_none(sample))
        latencies.append(time.perf_counter() - t0)
        for loop, p in enumerate(preds):
            labels = p.labels if to_dataset is None else to_dataset[p.labels]
            seg[loop].update(labels, sample['labels'], sample.get('instances'))
            if gt_depth is not None and p.depth is not None:      # a peer has no depth
                depth[loop].update(p.depth, gt_depth)
        if on_frame is not None:
            on_frame(i, sample if given is None else {**sample, 'sensor_depth': given}, preds)
    lat = np.array(latencies) * 1e3
    result = {'frames': n, 'gate_source': preds[-1].gate_source if n else None,
              'sensor_depth': sensor_depth, 'depth_cap_m': max_depth,
              'sensor_valid_fraction': float(np.mean(valid_fraction)) if valid_fraction
              else None,
              'latency_ms': percentiles(lat) if n else {}}
    for loop in range(loops + 1):
        s = seg[loop].compute()
        s['iou'] = s['iou'][:scored]
        result[f'loop{loop}'] = {'miou': float(np.nanmean(s['iou'])),
                                 'pixel_accuracy': s['pixel_accuracy'],
                                 'miiou': s['miiou'], 'iou': dict(zip(names, s['iou'])),
                                 **{k: dict(zip(names, s[k][:scored]))
                                    for k in ('recall', 'precision')},
                                 'depth': depth[loop].compute()}
    result['final'] = result[f'loop{loops}']
    return result


def scoring_classes(dataset, model_names: tuple[str, ...]):
    """
    Return (model class -> scored class lookup or None, scored class names, classes in mIoU).

    A dataset with classes of its own is scored in them: each model class as the one dataset
    class that covers it (data/labels.py). A model class no dataset class covers is a wrong
    answer wherever it is predicted: one more column, in no class's IoU.
    """
    if getattr(dataset, 'covers', None) is None:
        return None, tuple(model_names), len(model_names)
    to_dataset = model_to_dataset(cover_matrix(dataset.covers, model_names))
    names = tuple(dataset.class_names)
    scored = len(names)
    to_dataset[to_dataset == IGNORE_ID] = scored
    if (to_dataset == scored).any():
        names = names + ('(not a class of this dataset)',)
    return to_dataset, names, scored


def focal_or_none(sample: dict) -> float | None:
    """Return the sample's focal length in pixels, None where it has no camera."""
    try:
        return sample_focal(sample)
    except ValueError:
        return None
