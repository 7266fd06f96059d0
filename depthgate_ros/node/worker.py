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
The node's worker: the newest-frame slot, the torch thread, the wait for depth, one frame's run.

No rclpy. The ROS shell (perception.py) hands it messages and takes finished frames back
through a WorkerHost, so the worker is tested without DDS (test_worker.py).

Callbacks only store: the worker always takes the newest image (at most one waits; a replaced
one is counted), so a slow model never builds a backlog of stale frames.

Every torch call runs on the worker's one thread, loading the model included (`on_torch`):
torch's OpenMP gives each thread that runs parallel work its own pool of threads, and once the
pools hold more threads than there are cores, libgomp stops spinning between parallel regions,
which makes a model loaded on one thread and run on another markedly slower.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
import threading
import time
from typing import Any, Protocol

import numpy as np
import torch

from .health import Health
from .switch_log import SwitchLog
from ..frames import Frame, FramePipeline, FrameSettings
from ..pairing import stamp_ns


class WorkerHost(Protocol):
    """What the worker needs from the node around it."""

    def decode_rgb(self, msg) -> np.ndarray:
        """Return the image as RGB; raise ValueError for one that cannot be read."""

    def focal_px(self, width: int) -> float | None:
        """Return the camera's focal length at this image width, if camera_info has come."""

    def now_ns(self) -> int:
        """Return the node clock's time, as stamps and arrivals are measured."""

    def depth_expected(self) -> bool:
        """Tell whether a depth or disparity publisher is matched (a silent stream may resume)."""

    def publish(self, msg, frame: Frame, settings: FrameSettings) -> None:
        """Publish a finished frame's outputs with the header of `msg`."""

    def publish_info(self, msg, frame: Frame, milliseconds: dict[str, float]) -> None:
        """Publish what the frame took (~/frame_info)."""

    def info(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...


class FrameWorker:
    """Runs frames on one torch thread; `image` and `depth` are called from callbacks."""

    def __init__(self, host: WorkerHost):
        self.host = host
        self._wake = threading.Condition()
        self._publishing = threading.Lock()
        self._lock = threading.Lock()           # guards settings and pairing
        self._stop = True
        self._torch: ThreadPoolExecutor | None = None
        self._future = None                     # the worker loop while frames are processed
        self._slot: tuple[Any, int, float] | None = None
        self.pipeline: FramePipeline | None = None
        self.settings = FrameSettings()
        self.reset()

    # -- the torch thread -----------------------------------------------------------------

    def start_torch(self) -> None:
        self._torch = ThreadPoolExecutor(1, thread_name_prefix='depthgate-inference')

    def on_torch(self, fn, *args):
        """Run `fn(*args)` on the torch thread and return its result."""
        return self._torch.submit(fn, *args).result()

    def stop_torch(self) -> None:
        """End the torch thread (after `stop`); its OpenMP pool goes with it."""
        if self._torch is not None:
            self._torch.shutdown(wait=True)
            self._torch = None

    # -- configuration ----------------------------------------------------------------------

    def attach(self, pipeline: FramePipeline | None, settings: FrameSettings | None = None):
        """Take the pipeline frames run through (None: let it go) and the first settings."""
        with self._lock:
            self.pipeline = pipeline
            if settings is not None:
                self.settings = settings

    def update(self, settings: FrameSettings, sync_slop: float, depth_timeout: float) -> None:
        """Apply changed parameters; the next frame runs with them."""
        with self._lock:
            self.settings = settings
            self.pipeline.configure_pairing(sync_slop, depth_timeout)

    def reset(self) -> None:
        """Start a fresh account: health, the gate log and the warning throttle."""
        with self._wake:
            self._slot = None
        self.health = Health()
        self.gate_log = SwitchLog()
        self.last_gate_source: str | None = None
        self._throttle: dict[str, float] = {}

    # -- inputs (callbacks: store only) -----------------------------------------------------

    def image(self, msg) -> None:
        """Store an image in the newest-frame slot (replacing a waiting one)."""
        with self._wake:
            replaced = self._slot is not None
            self._slot = (msg, self.host.now_ns(), time.monotonic())
            self._wake.notify()
        self.health.received(stamp_ns(msg), replaced)

    def depth(self, msg, item) -> None:
        """Store a depth or disparity message for pairing; `item` is what the decoder takes."""
        with self._lock:
            self.pipeline.add_depth(stamp_ns(msg), item, self.host.now_ns())
        with self._wake:
            self._wake.notify()

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stop = False
        self._future = self._torch.submit(self._run)
        self._future.add_done_callback(self._ended)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop processing; once this returns no frame will be published."""
        with self._wake:
            self._stop = True
            self._slot = None
            self._wake.notify_all()
        with self._publishing:      # waits for a publish under way
            pass
        if self._future is not None:
            wait([self._future], timeout)
            self._future = None

    def warn(self, key: str, text: str, period: float = 5.0) -> None:
        """Log a warning at most once per `period` seconds per `key`."""
        now = time.monotonic()
        if now - self._throttle.get(key, -1e9) >= period:
            self._throttle[key] = now
            self.host.warn(text)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._slot is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                msg, arrival_ns, arrival_mono = self._slot
                self._slot = None
            try:
                done = self._process(msg, arrival_ns, arrival_mono)
            except Exception as e:  # never let one frame kill the node
                done = False
                self.health.count('errors')
                self.warn('frame', f'frame skipped: {type(e).__name__}: {e}')
            if not done:
                self.health.failed()

    def _ended(self, future) -> None:
        # a Future keeps its exception to itself: say that frames are no longer processed
        if not future.cancelled() and (e := future.exception()) is not None:
            self.host.error(f'inference worker stopped: {type(e).__name__}: {e}')

    def _partner(self, stamp: int, arrival_ns: int):
        """
        Return the paired depth item, waiting while depth flows (bounded by depth_timeout).

        None = monocular. Gives up early when a newer image arrives.
        """
        expected = self.host.depth_expected()       # once a frame, not every 5 ms of waiting
        while True:
            with self._lock:
                match = self.pipeline.partner(stamp)
                wait_more = match is None and stamp and self.pipeline.should_wait(
                    arrival_ns, self.host.now_ns(), expected=expected)
            if not wait_more:
                return match.item if match else None
            with self._wake:
                if self._slot is not None or self._stop:
                    return None
                self._wake.wait(timeout=0.005)

    def _process(self, msg, arrival_ns: int, arrival_mono: float) -> bool:
        """Run one frame; False when it produced no output."""
        t_decode = time.monotonic()
        try:
            rgb = self.host.decode_rgb(msg)
        except ValueError as e:
            self.health.count('errors')
            self.warn('decode', f'image dropped: {e}')
            return False
        decode_s = time.monotonic() - t_decode
        stamp = stamp_ns(msg)
        with self._lock:
            warning = self.pipeline.check_stamp(stamp)
            settings = self.settings
        if warning:
            self.health.count('stamp_warnings')
            self.warn('stamp', warning)
        partner = self._partner(stamp, arrival_ns) if \
            self.pipeline.wants_depth(settings.gate) else None
        try:
            # depth stays metric on a camera unlike the training one (Predictor.camera_scale)
            frame = self.pipeline.run(rgb, settings, partner=partner,
                                      focal_px=self.host.focal_px(rgb.shape[1]))
        except torch.cuda.OutOfMemoryError:
            self.health.count('oom')
            torch.cuda.empty_cache()
            self.warn('oom', 'CUDA out of memory: frame skipped, cache freed')
            return False
        if frame.depth_error:
            self.health.count('depth_errors')
            self.warn('depth', f'{partner[0]} ignored, running monocular: {frame.depth_error}')
        model_s = frame.seconds['model_s']
        # Publishing holds _publishing: stop() takes it, so no publish can run into a context
        # that is about to shut down.
        with self._publishing:
            if self._stop:
                return False
            t_out = time.monotonic()
            self.host.publish(msg, frame, settings)
            done = time.monotonic()
            # decode_ms: image (and depth) conversion in; publish_ms: conversion out and
            # publish; latency_ms: arrival to published, including any wait for depth.
            self.host.publish_info(msg, frame, {
                'model_ms': model_s * 1e3,
                'decode_ms': (decode_s + frame.seconds['depth_decode_s']) * 1e3,
                'publish_ms': (done - t_out) * 1e3, 'latency_ms': (done - arrival_mono) * 1e3})
        self.health.processed(done, done - arrival_mono, model_s)
        gate = frame.prediction.gate_source
        self.last_gate_source = gate
        if switch := self.gate_log.update(gate, done):
            self.host.info(f'gate source: {switch[0]} -> {switch[1]}')
        return True
