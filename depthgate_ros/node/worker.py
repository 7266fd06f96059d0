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
The node's worker: newest-frame slots, the torch thread, depth waits, batches of frames.

No rclpy. The ROS shell (perception.py) hands it messages and takes finished frames back
through a WorkerHost, so the worker is tested without DDS (test_worker.py).

Callbacks only store: each camera has a slot for its newest image (at most one waits; a
replaced one is counted), so a slow model never builds a backlog of stale frames. The worker
takes the waiting image of every camera that has one, up to `max_batch`, cameras that waited
longest first (one left out goes first next time: none starves), and runs them as one batch.
One camera's frame runs alone, exactly as a single-camera node runs it.

Every torch call runs on the worker's one thread, loading the model included (`on_torch`):
torch's OpenMP gives each thread that runs parallel work its own pool of threads, and once the
pools hold more threads than there are cores, libgomp stops spinning between parallel regions,
which makes a model loaded on one thread and run on another markedly slower.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
import threading
import time
from typing import Any, Protocol

import numpy as np
import torch

from .health import Health
from .switch_log import SwitchLog
from ..frames import Frame, FramePipeline, FrameSettings, Job, run_batch
from ..pairing import stamp_ns


class WorkerHost(Protocol):
    """What the worker needs from the node around it; `camera` is a name from `cameras`."""

    def decode_rgb(self, msg) -> np.ndarray:
        """Return the image as RGB; raise ValueError for one that cannot be read."""

    def focal_px(self, camera: str, width: int) -> float | None:
        """Return the camera's focal length at this image width, if camera_info has come."""

    def now_ns(self) -> int:
        """Return the node clock's time, as stamps and arrivals are measured."""

    def depth_expected(self, camera: str) -> bool:
        """Tell whether a depth or disparity publisher is matched (a silent stream may resume)."""

    def publish(self, camera: str, msg, frame: Frame, settings: FrameSettings) -> None:
        """Publish a finished frame's outputs with the header of `msg`."""

    def publish_info(self, camera: str, msg, frame: Frame, milliseconds: dict[str, float],
                     batch: int) -> None:
        """Publish what the frame took (~/frame_info) and how many frames shared its pass."""

    def info(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...


@dataclass
class Stream:
    """One camera's share of the worker: its slot, pairing, settings and account."""

    name: str
    pipeline: FramePipeline
    settings: FrameSettings
    slot: tuple[Any, int, float] | None = None      # (message, arrival ns, arrival monotonic)
    health: Health = field(default_factory=Health)
    gate_log: SwitchLog = field(default_factory=SwitchLog)
    last_gate_source: str | None = None
    turn: int = -1                  # when it was last taken: the longest waiting go first

    def says(self, text: str) -> str:
        """Prefix a log line with the camera, when there are named ones."""
        return f'camera {self.name}: {text}' if self.name else text


@dataclass
class _Taken:
    """A frame on its way through a batch."""

    stream: Stream
    msg: Any
    arrival_ns: int
    arrival_mono: float
    rgb: np.ndarray | None = None
    decode_s: float = 0.0
    settings: FrameSettings | None = None
    partner: Any = None


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
        self.streams: dict[str, Stream] = {}
        self.max_batch = 0                      # 0: every camera with a frame
        self._turns = 0
        self._throttle: dict[str, float] = {}

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

    @property
    def pipeline(self) -> FramePipeline | None:
        """Return the first camera's FramePipeline; every camera's shares its predictor."""
        return next(iter(self.streams.values())).pipeline if self.streams else None

    def attach(self, pipelines: dict[str, FramePipeline] | None,
               settings: dict[str, FrameSettings] | None = None, max_batch: int = 0) -> None:
        """
        Take a pipeline and the first settings per camera, with a fresh account (None: none).

        The pipelines share one predictor; each pairs its own camera's depth.
        """
        with self._wake, self._lock:
            self.streams = {name: Stream(name, pipeline, settings[name])
                            for name, pipeline in (pipelines or {}).items()}
            self.max_batch = max_batch
            self._throttle = {}

    def update(self, camera: str, settings: FrameSettings, sync_slop: float,
               depth_timeout: float) -> None:
        """Apply changed parameters to a camera; its next frame runs with them."""
        with self._lock:
            stream = self.streams[camera]
            stream.settings = settings
            stream.pipeline.configure_pairing(sync_slop, depth_timeout)

    def stats(self) -> dict:
        """Counters since configure, summed over the cameras (rates: per camera, Health)."""
        total: dict = {}
        for stream in self.streams.values():
            for key, value in stream.health.stats.items():
                if not key.endswith('_hz'):
                    total[key] = total.get(key, 0) + value
        return total

    # -- inputs (callbacks: store only) -----------------------------------------------------

    def image(self, msg, camera: str = '') -> None:
        """Store an image in its camera's newest-frame slot (replacing a waiting one)."""
        stream = self.streams[camera]
        with self._wake:
            replaced = stream.slot is not None
            stream.slot = (msg, self.host.now_ns(), time.monotonic())
            self._wake.notify()
        stream.health.received(stamp_ns(msg), replaced)

    def depth(self, msg, item, camera: str = '') -> None:
        """Store a depth or disparity message for pairing; `item` is what the decoder takes."""
        with self._lock:
            self.streams[camera].pipeline.add_depth(stamp_ns(msg), item, self.host.now_ns())
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
            for stream in self.streams.values():
                stream.slot = None
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
                while not self._stop and not any(s.slot for s in self.streams.values()):
                    self._wake.wait()
                if self._stop:
                    return
                batch = self._take()
            try:
                self._process(batch)
            except Exception as e:  # never let a batch kill the node
                for t in batch:
                    self._failed(t.stream, 'frame', f'frame skipped: {type(e).__name__}: {e}')
                    t.stream.health.failed()

    def _take(self) -> list[_Taken]:
        """Empty the slots of the cameras that go next (under _wake)."""
        ready = sorted((s for s in self.streams.values() if s.slot is not None),
                       key=lambda s: s.turn)
        batch = []
        for stream in ready[:self.max_batch or None]:
            batch.append(_Taken(stream, *stream.slot))
            # numbered in the order taken, so that cameras of one batch do not tie next time
            stream.slot, stream.turn = None, self._turns
            self._turns += 1
        return batch

    def _ended(self, future) -> None:
        # a Future keeps its exception to itself: say that frames are no longer processed
        if not future.cancelled() and (e := future.exception()) is not None:
            self.host.error(f'inference worker stopped: {type(e).__name__}: {e}')

    def _failed(self, stream: Stream, key: str, text: str) -> None:
        stream.health.count('errors')
        self.warn(stream.name + key, stream.says(text))

    def _process(self, batch: list[_Taken]) -> None:
        """Run a batch; a frame that fails costs no other its output."""
        ready = []
        for t in batch:
            try:
                if self._prepare(t):
                    ready.append(t)
                    continue
            except Exception as e:  # never let one frame kill the node
                self._failed(t.stream, 'frame', f'frame skipped: {type(e).__name__}: {e}')
            t.stream.health.failed()
        self._pair(ready)
        for t, frame in self._run_frames(ready):
            try:
                done = frame is not None and self._publish(t, frame, len(ready))
            except Exception as e:
                done = False
                self._failed(t.stream, 'frame', f'frame skipped: {type(e).__name__}: {e}')
            if not done:
                t.stream.health.failed()

    def _prepare(self, t: _Taken) -> bool:
        """Decode the image and check its stamp; False when it cannot run."""
        start = time.monotonic()
        try:
            t.rgb = self.host.decode_rgb(t.msg)
        except ValueError as e:
            self._failed(t.stream, 'decode', f'image dropped: {e}')
            return False
        t.decode_s = time.monotonic() - start
        with self._lock:
            warning = t.stream.pipeline.check_stamp(stamp_ns(t.msg))
            t.settings = t.stream.settings
        if warning:
            t.stream.health.count('stamp_warnings')
            self.warn(t.stream.name + 'stamp', t.stream.says(warning))
        return True

    def _pair(self, batch: list[_Taken]) -> None:
        """
        Find each frame's depth partner, waiting while its depth flows (up to depth_timeout).

        No partner = monocular. A frame gives up early when a newer image of its camera arrives.
        """
        waiting = [t for t in batch if t.stream.pipeline.wants_depth(t.settings.gate)]
        # once a frame, not every 5 ms of waiting
        expected = {t.stream.name: self.host.depth_expected(t.stream.name) for t in waiting}
        while waiting:
            still = []
            for t in waiting:
                stamp = stamp_ns(t.msg)
                with self._lock:
                    match = t.stream.pipeline.partner(stamp)
                    wait_more = match is None and stamp and t.stream.pipeline.should_wait(
                        t.arrival_ns, self.host.now_ns(), expected=expected[t.stream.name])
                if not wait_more:
                    t.partner = match.item if match else None
                elif t.stream.slot is None and not self._stop:
                    still.append(t)
            waiting = still
            if waiting:
                with self._wake:
                    self._wake.wait(timeout=0.005)

    def _run_frames(self, batch: list[_Taken]) -> list[tuple[_Taken, Frame | None]]:
        """Run the frames as one batch; if that fails, one by one, so only a bad one fails."""
        if not batch:
            return []
        # depth stays metric on a camera unlike the training one (Predictor.camera_scale)
        jobs = [Job(t.stream.pipeline, t.rgb, t.settings, t.partner,
                    self.host.focal_px(t.stream.name, t.rgb.shape[1])) for t in batch]
        try:
            if len(jobs) == 1:
                j = jobs[0]
                frames = [j.pipeline.run(j.rgb, j.settings, partner=j.partner,
                                         focal_px=j.focal_px)]
            else:
                frames = run_batch(jobs)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            for t in batch:
                t.stream.health.count('oom')
            self.warn('oom', 'CUDA out of memory: frames skipped, cache freed')
            return [(t, None) for t in batch]
        except Exception as e:
            if len(batch) == 1:
                self._failed(batch[0].stream, 'frame',
                             f'frame skipped: {type(e).__name__}: {e}')
                return [(batch[0], None)]
            return [pair for t in batch for pair in self._run_frames([t])]
        return list(zip(batch, frames))

    def _publish(self, t: _Taken, frame: Frame, batch: int) -> bool:
        """Publish a finished frame; False once stopping."""
        stream = t.stream
        if frame.depth_error:
            stream.health.count('depth_errors')
            self.warn(stream.name + 'depth', stream.says(
                f'{t.partner[0]} ignored, running monocular: {frame.depth_error}'))
        model_s = frame.seconds['model_s']
        # Publishing holds _publishing: stop() takes it, so no publish can run into a context
        # that is about to shut down.
        with self._publishing:
            if self._stop:
                return False
            t_out = time.monotonic()
            self.host.publish(stream.name, t.msg, frame, t.settings)
            done = time.monotonic()
            # decode_ms: image (and depth) conversion in; publish_ms: conversion out and
            # publish; latency_ms: arrival to published, including any wait for depth and for
            # the frames published before it in its batch.
            self.host.publish_info(stream.name, t.msg, frame, {
                'model_ms': model_s * 1e3,
                'decode_ms': (t.decode_s + frame.seconds['depth_decode_s']) * 1e3,
                'publish_ms': (done - t_out) * 1e3,
                'latency_ms': (done - t.arrival_mono) * 1e3}, batch)
        stream.health.processed(done, done - t.arrival_mono, model_s)
        gate = frame.prediction.gate_source
        stream.last_gate_source = gate
        if switch := stream.gate_log.update(gate, done):
            self.host.info(stream.says(f'gate source: {switch[0]} -> {switch[1]}'))
        return True
