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
One camera frame through the network, without ROS: pair, choose the gate, predict, encode.

perception_node, its lifecycle twin and depthgate-bag-eval run every frame through a
FramePipeline, so pairing, the gate choice and the output images exist once. Messages stay
opaque here: the caller hands over its depth decoder (ros/image_codec.py: decode_depth), and
gets back arrays with their ROS encodings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import time
from typing import Any, Callable

import numpy as np

from .inference import OPTIONAL_OUTPUTS, Prediction, Predictor
from .pairing import DepthPairing, Partner
from .visualize import colorize_labels, palette

# Image outputs, each published as ~/<name> (masks: ~/masks/<class>).
IMAGE_OUTPUTS = ('labels', 'labels_color', 'depth', 'confidence', 'gate')


def label_encoding(labels: np.ndarray) -> str:
    """mono8 for up to 256 classes, mono16 beyond (Predictor picks the dtype)."""
    return 'mono8' if labels.dtype == np.uint8 else 'mono16'


def topic_name(class_name: str) -> str:
    """Return a class name as a topic name component ('traffic light' -> 'traffic_light')."""
    return ''.join(c if c.isalnum() else '_' for c in class_name.strip())


def mask_names(classes) -> tuple[str, ...]:
    """Return the mask_classes parameter as topic names, blank entries dropped."""
    return tuple(topic_name(c) for c in classes if c.strip())


@dataclass(frozen=True)
class FrameSettings:
    """What may change from one frame to the next (the node's dynamic parameters)."""

    gate: str = 'auto'
    loops: int | None = None                # None: the Predictor's
    budget_ms: float | None = None
    depth_unit_scale: float = 0.001          # metres per 16UC1 unit
    outputs: frozenset = frozenset(IMAGE_OUTPUTS)
    labels_color_alpha: float = 0.0
    mask_classes: tuple[str, ...] = ()       # topic names


@dataclass
class Frame:
    """One processed frame: the predictions (one per loop, or the last) and what went in."""

    predictions: list[Prediction]
    rgb: np.ndarray
    sensor_depth: np.ndarray | None          # metres, NaN invalid; None: monocular
    depth_error: str | None = None           # why a paired depth message was not used
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def prediction(self) -> Prediction:
        return self.predictions[-1]


class FramePipeline:
    """
    The per-frame work of every frame consumer.

    `decode_depth(item, unit_scale)` turns a stored partner (whatever the caller added with
    `add_depth`) into metres, raising ValueError on bad data.
    """

    def __init__(self, predictor: Predictor, decode_depth: Callable[[Any, float], np.ndarray],
                 *, sync_slop: float = 0.05, depth_timeout: float = 0.5, queue_size: int = 10):
        self.predictor = predictor
        self.decode_depth = decode_depth
        self.pairing = DepthPairing(sync_slop, depth_timeout, queue_size=queue_size)
        self.lut = palette(predictor.info.colors)
        self.class_ids = {topic_name(n): i for i, n in enumerate(predictor.info.class_names)}
        self._last_stamp: int | None = None

    # -- pairing --------------------------------------------------------------------------

    def add_depth(self, stamp_ns: int, item: Any, arrival_ns: int) -> None:
        self.pairing.add(stamp_ns, item, arrival_ns)

    def configure_pairing(self, sync_slop: float, depth_timeout: float) -> None:
        self.pairing.configure(sync_slop, depth_timeout)

    def wants_depth(self, gate: str) -> bool:
        """Tell whether a frame run with `gate` reads sensor depth: worth pairing, waiting for."""
        return self.predictor.wants_depth(gate)

    def partner(self, stamp_ns: int) -> Partner | None:
        return self.pairing.match(stamp_ns) if stamp_ns else None

    @property
    def depth_timeout_ns(self) -> int:
        return self.pairing.timeout_ns

    @property
    def pairing_window_ns(self) -> int:
        """How far ahead of an image its partner may have been recorded: timeout plus slop."""
        return self.pairing.timeout_ns + self.pairing.slop_ns

    def should_wait(self, image_arrival_ns: int, now_ns: int, expected: bool) -> bool:
        """Tell whether an image without a partner yet is worth waiting for (DepthPairing)."""
        return self.pairing.should_wait(image_arrival_ns, now_ns, expected=expected)

    def check_stamp(self, stamp_ns: int) -> str | None:
        """
        Return a warning for a stamp that breaks pairing, or None.

        Stamps that go backwards (a bag restarted) forget the stored depth.
        """
        last, self._last_stamp = self._last_stamp, stamp_ns or self._last_stamp
        if stamp_ns == 0:
            return 'image stamp is zero: cannot pair depth, running monocular'
        if last is not None and stamp_ns < last:
            self.pairing.reset()
            return 'image stamps went backwards (bag restarted?): depth pairing reset'
        return None

    # -- one frame ------------------------------------------------------------------------

    def run(self, rgb: np.ndarray, settings: FrameSettings, *, partner: Any = None,
            focal_px: float | None = None, every_loop: bool = False) -> Frame:
        """
        Predict one frame, with the paired depth item `partner` (None: monocular).

        Pair only for a gate that `wants_depth`: a partner given is decoded.

        `focal_px`: the camera's focal length at the image's width, so depth stays metric on a
        camera unlike the training one. `every_loop`: a Prediction per recurrent loop.
        """
        t0 = time.monotonic()
        depth, error = self.decode(partner, settings)
        t1 = time.monotonic()
        run = self.predictor.predict_loops if every_loop else self.predictor.predict
        # confidence and the gate map cost full-resolution work: only for enabled outputs
        out = run(rgb, depth, loops=settings.loops, gate=settings.gate,
                  budget_ms=settings.budget_ms, focal_px=focal_px,
                  outputs=settings.outputs & set(OPTIONAL_OUTPUTS))
        return Frame(out if every_loop else [out], rgb, depth, error,
                     {'depth_decode_s': t1 - t0, 'model_s': time.monotonic() - t1})

    def decode(self, partner: Any,
               settings: FrameSettings) -> tuple[np.ndarray | None, str | None]:
        """Return a paired depth item in metres (None: none), and why it was refused, if it was."""
        if partner is None:
            return None, None
        try:
            return self.decode_depth(partner, settings.depth_unit_scale), None
        except ValueError as e:
            return None, str(e)

    def images(self, frame: Frame, settings: FrameSettings) -> dict[str, tuple[np.ndarray, str]]:
        """Return the enabled image outputs: name -> (array, ROS encoding)."""
        pred, on = frame.prediction, settings.outputs
        out = {}
        if 'labels' in on:
            out['labels'] = (pred.labels, label_encoding(pred.labels))
        if 'labels_color' in on:
            out['labels_color'] = (colorize_labels(pred.labels, self.lut, frame.rgb,
                                                   settings.labels_color_alpha), 'rgb8')
        if 'depth' in on and pred.depth is not None:
            out['depth'] = (pred.depth, '32FC1')
        if 'confidence' in on:
            out['confidence'] = (pred.confidence, '32FC1')
        if 'gate' in on and pred.gate is not None:
            out['gate'] = (pred.gate, 'mono8')
        for name in settings.mask_classes:
            mask = np.where(pred.labels == self.class_ids[name], 255, 0).astype(np.uint8)
            out[f'masks/{name}'] = (mask, 'mono8')
        return out

    @staticmethod
    def fused_depth(frame: Frame) -> np.ndarray:
        """Sensor depth where the frame has it, the network's estimate elsewhere."""
        pred = frame.prediction.depth
        if frame.sensor_depth is None:
            return pred
        return np.where(np.isfinite(frame.sensor_depth), frame.sensor_depth, pred)


@dataclass
class Job:
    """One camera's frame in a batch: its pipeline (pairing, depth decoder), image and inputs."""

    pipeline: FramePipeline
    rgb: np.ndarray
    settings: FrameSettings
    partner: Any = None
    focal_px: float | None = None


def run_batch(jobs: list[Job]) -> list[Frame]:
    """
    Predict several cameras' frames in one pass of their shared predictor (predict_batch).

    Each frame's depth is decoded with its own pipeline and unit scale, and keeps its own gate;
    loops, gate source, budget and outputs are the first job's (the node shares them between
    cameras). Without a fixed inference size, frames of one size share a pass.
    """
    predictor, shared = jobs[0].pipeline.predictor, jobs[0].settings
    t0 = time.monotonic()
    depths, errors = zip(*(job.pipeline.decode(job.partner, job.settings) for job in jobs))
    t1 = time.monotonic()
    groups: dict[Any, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(predictor.size or job.rgb.shape[:2], []).append(i)
    preds: list[Prediction | None] = [None] * len(jobs)
    for index in groups.values():
        out = predictor.predict_batch(
            [jobs[i].rgb for i in index], [depths[i] for i in index],
            [jobs[i].focal_px for i in index], loops=shared.loops, gate=shared.gate,
            budget_ms=shared.budget_ms, outputs=shared.outputs & set(OPTIONAL_OUTPUTS))
        for i, pred in zip(index, out):
            preds[i] = pred
    seconds = {'depth_decode_s': (t1 - t0) / len(jobs), 'model_s': time.monotonic() - t1}
    return [Frame([pred], job.rgb, depth, error, dict(seconds))
            for job, pred, depth, error in zip(jobs, preds, depths, errors)]
