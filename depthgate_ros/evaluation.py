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

from .inference import Predictor
from .metrics import cityscapes_avg_instance_size, DepthMetric, SegmentationMetric


def evaluate_dataset(predictor: Predictor, dataset, *, gate: str | None = None,
                     sensor_depth: bool = False, max_frames: int | None = None,
                     max_depth: float | None = None, on_frame=None) -> dict:
    """
    Evaluate a Predictor on a dataset: segmentation and depth metrics.

    `sensor_depth`: hand each sample's ground-truth depth to the Predictor (the paper's
    "gt-depth" rows); the gate still sees all of it, `max_depth` only caps the depth metrics.
    `on_frame(i, sample, predictions)` sees every frame (for pictures).
    """
    names = predictor.info.class_names
    sizes = cityscapes_avg_instance_size(names) if len(names) == 19 else {}
    loops = predictor.loops
    seg = [SegmentationMetric(len(names), avg_instance_size=sizes) for _ in range(loops + 1)]
    depth = [DepthMetric(max_depth) for _ in range(loops + 1)]
    latencies = []
    n = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    for i in range(n):
        sample = dataset[i]
        gt_depth = sample.get('depth')
        t0 = time.perf_counter()
        preds = predictor.predict_loops(sample['rgb'], gt_depth if sensor_depth else None,
                                        gate=gate)
        latencies.append(time.perf_counter() - t0)
        for loop, p in enumerate(preds):
            seg[loop].update(p.labels, sample['labels'], sample.get('instances'))
            if gt_depth is not None:
                depth[loop].update(p.depth, gt_depth)
        if on_frame is not None:
            on_frame(i, sample, preds)
    lat = np.array(latencies) * 1e3
    result = {'frames': n, 'gate_source': preds[-1].gate_source if n else None,
              'depth_cap_m': max_depth,
              'latency_ms': {'p50': float(np.percentile(lat, 50)),
                             'p95': float(np.percentile(lat, 95))} if n else {}}
    for loop in range(loops + 1):
        s = seg[loop].compute()
        result[f'loop{loop}'] = {'miou': s['miou'], 'pixel_accuracy': s['pixel_accuracy'],
                                 'miiou': s['miiou'], 'iou': dict(zip(names, s['iou'])),
                                 'depth': depth[loop].compute()}
    result['final'] = result[f'loop{loops}']
    return result
