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

"""The node's worker without ROS: newest frame first, depth waits, bad frames, stopping."""
import threading
import time
from types import SimpleNamespace

from depthgate_ros.frames import FramePipeline, FrameSettings
from depthgate_ros.inference import Predictor
from depthgate_ros.node.worker import FrameWorker
import numpy as np
import pytest


def _msg(sec: int, rgb=None):
    """Make a stamped message as the worker sees one: a header and, here, the image itself."""
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=0)),
                           rgb=np.full((48, 64, 3), 100, np.uint8) if rgb is None else rgb)


class Host:
    """The worker's host, recording what it is asked to publish and log."""

    def __init__(self, depth_expected: bool = False):
        self.published, self.infos, self.warnings, self.errors = [], [], [], []
        self.expected = depth_expected
        self.done = threading.Event()

    def decode_rgb(self, msg):
        if msg.rgb is None or msg.rgb.ndim != 3:
            raise ValueError('not an RGB image')
        return msg.rgb

    def focal_px(self, camera, width):
        return None

    def now_ns(self):
        return time.monotonic_ns()

    def depth_expected(self, camera):
        return self.expected

    def publish(self, camera, msg, frame, settings):
        self.published.append((msg.header.stamp.sec, frame))
        self.done.set()

    def publish_info(self, camera, msg, frame, milliseconds, batch):
        self.infos.append(milliseconds)

    def info(self, text):
        pass

    def warn(self, text):
        self.warnings.append(text)

    def error(self, text):
        self.errors.append(text)


@pytest.fixture
def worker_for(tiny_checkpoint):
    made = []

    def make(host, **pairing):
        worker = FrameWorker(host)
        worker.start_torch()
        predictor = worker.on_torch(lambda: Predictor.from_checkpoint(tiny_checkpoint,
                                                                      device='cpu'))
        # a depth item is its array in metres already
        worker.attach({'': FramePipeline(predictor, lambda item, scale: item, **pairing)},
                      {'': FrameSettings()})
        made.append(worker)
        return worker
    yield make
    for worker in made:
        worker.stop()
        worker.stop_torch()


def _wait(host, count, timeout=30.0):
    deadline = time.monotonic() + timeout
    while len(host.published) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(host.published) >= count


def test_the_newest_image_is_processed_and_replaced_ones_are_counted(worker_for):
    host = Host()
    worker = worker_for(host)
    for sec in (1, 2, 3):               # before the worker runs: each replaces the last
        worker.image(_msg(sec))
    worker.start()
    assert _wait(host, 1)
    time.sleep(0.2)
    assert [sec for sec, _ in host.published] == [3]
    stats = worker.stats()
    assert (stats['received'], stats['replaced'], stats['processed']) == (3, 2, 1)
    assert set(host.infos[0]) == {'model_ms', 'decode_ms', 'publish_ms', 'latency_ms'}
    assert worker.streams[''].last_gate_source == 'predicted'   # no depth: the monocular gate


def test_a_frame_waits_for_depth_that_flows_and_runs_hybrid(worker_for):
    host = Host(depth_expected=True)
    worker = worker_for(host, sync_slop=0.01, depth_timeout=2.0)
    worker.start()
    depth = np.full((48, 64), 7.0, np.float32)
    worker.depth(_msg(9), depth)            # depth flows ...
    worker.image(_msg(10))                  # ... and this image's partner comes 0.3 s late
    time.sleep(0.3)
    assert host.published == []             # still waiting for it
    worker.depth(_msg(10), depth)
    assert _wait(host, 1)
    sec, frame = host.published[0]
    assert sec == 10 and frame.prediction.gate_source == 'hybrid'
    np.testing.assert_array_equal(frame.sensor_depth, depth)


def test_a_bad_image_is_counted_and_the_next_one_runs(worker_for):
    host = Host()
    worker = worker_for(host)
    worker.start()
    worker.image(_msg(1, rgb=np.zeros((48, 64), np.uint8)))     # one channel: not RGB
    deadline = time.monotonic() + 10
    while not host.warnings and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.warnings == ['image dropped: not an RGB image']
    worker.image(_msg(2))
    assert _wait(host, 1)
    assert [sec for sec, _ in host.published] == [2]
    assert worker.stats()['errors'] == 1 and not host.errors


def test_nothing_is_published_after_stop(worker_for):
    host = Host()
    worker = worker_for(host)
    worker.start()
    worker.image(_msg(1))
    assert _wait(host, 1)
    worker.stop()
    worker.image(_msg(2))
    time.sleep(0.3)
    assert [sec for sec, _ in host.published] == [1]


def test_cameras_left_out_of_a_batch_go_first_in_the_next():
    # tried: three cameras with a frame always waiting, batches of at most two
    worker = FrameWorker(Host())
    cameras = ('front', 'left', 'right')
    worker.attach(dict.fromkeys(cameras), dict.fromkeys(cameras, FrameSettings()), max_batch=2)
    batches = []
    for _ in range(4):
        for name in cameras:
            worker.streams[name].slot = (_msg(1), 0, 0.0)
        batches.append([t.stream.name for t in worker._take()])
    assert batches == [['front', 'left'], ['right', 'front'], ['left', 'right'],
                       ['front', 'left']]
    # taken frames leave their slots; the one left out still waits
    assert [n for n in cameras if worker.streams[n].slot is not None] == ['right']
