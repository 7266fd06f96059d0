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
The one rclpy participant this package runs besides perception_node: a player.

It publishes what a camera (or a bag) would, collects what the node publishes, and waits with
deadlines. The demo, `depthgate-bench`, realtime `depthgate-bag-eval` and the test suite all
use it, on the domain and discovery settings of dds.py (the one domain-id policy).
"""
from __future__ import annotations

from dataclasses import dataclass
import threading
import time
from typing import Callable

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

from .dds import use_locally
from ..pairing import NS, stamp_ns


class Player:
    """
    Its own rclpy context, one node (`peer`), a single-threaded executor spinning behind.

    Single-threaded on purpose: more executor threads fight a node's inference thread for the
    GIL (each torch op needs it back), which can stretch a model pass many times over.
    """

    def __init__(self, name: str = 'depthgate_player', args: list[str] | None = None):
        use_locally()
        self.context = rclpy.Context()
        rclpy.init(args=args, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []
        self.peer = self.add(rclpy.create_node(name, context=self.context))
        self.received: dict[str, list] = {}
        self._lock = threading.Lock()
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def add(self, node):
        """Spin another node (e.g. an in-process perception node) with this one."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def publisher(self, msg_type, topic: str, reliable: bool = False, depth: int = 10):
        """Create a publisher as a camera driver does: best effort (sensor data) by default."""
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        return self.peer.create_publisher(msg_type, topic, qos)

    def collect(self, msg_type, topic: str, depth: int = 50,
                on_message: Callable | None = None, keep: bool = True) -> None:
        """
        Keep every message on `topic` with its arrival time (reliable, as outputs are).

        `on_message` is called with each; `keep=False` keeps none (a long soak).
        """
        self.received[topic] = []

        def store(msg, topic=topic):
            if keep:
                with self._lock:
                    self.received[topic].append((time.monotonic(), msg))
            if on_message is not None:
                on_message(msg)
        self.peer.create_subscription(msg_type, topic, store, QoSProfile(
            depth=depth, reliability=ReliabilityPolicy.RELIABLE))

    def messages(self, topic: str) -> list:
        """(arrival time, message) pairs received on `topic` so far."""
        with self._lock:
            return list(self.received[topic])

    def by_stamp(self, topic: str) -> dict:
        """Messages on `topic` by header stamp (ns): the first (arrival time, message) of each."""
        out = {}
        for arrival, msg in self.messages(topic):
            out.setdefault(stamp_ns(msg), (arrival, msg))
        return out

    def wait_for(self, predicate, timeout: float = 20.0, period: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(period)
        return predicate()

    def wait_for_subscribers(self, pub, n: int = 1, timeout: float = 10.0) -> None:
        if not self.wait_for(lambda: pub.get_subscription_count() >= n, timeout):
            raise TimeoutError(f'no subscriber on {pub.topic_name} after {timeout:.0f} s')

    def close(self) -> None:
        self.executor.shutdown()
        # a process that exits while the spin thread still runs aborts in rclpy's C++
        self._spin.join(timeout=5)
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> 'Player':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class CameraFrame:
    """One frame a camera driver would publish: image, optional depth, intrinsics."""

    stamp_ns: int
    rgb: np.ndarray                  # (H, W, 3) uint8, published as rgb8 on `image`
    depth: np.ndarray | None         # metres, 32FC1 on `depth`, published just before the image
    k: list[float]                   # CameraInfo K (row-major 3x3)


@dataclass
class Session:
    """What a played camera got back from perception_node."""

    sent: dict[int, float]                       # stamp -> time the image was published
    outputs: dict[str, dict[int, tuple[float, np.ndarray]]]   # topic -> stamp -> arrival, array
    frame_info: dict[int, dict[str, str]]        # stamp -> ~/frame_info values
    status: dict[str, str]                       # the node's last /diagnostics values


def play_camera(frames: list[CameraFrame], rate_hz: float, node, outputs: tuple[str, ...],
                node_name: str = '/perception_node', start_timeout: float = 120.0) -> Session:
    """
    Play `frames` at `rate_hz` into a perception_node (a started NodeProcess).

    Waits for the node to subscribe, publishes camera_info, depth (where a frame has it, a
    little ahead of the image, as depth cameras deliver) and the image, then collects the
    node's `outputs` (image topics under `node_name`), ~/frame_info and /diagnostics.
    """
    return play_cameras({'': frames}, rate_hz, node, outputs, node_name, start_timeout)['']


def play_cameras(cameras: dict[str, list[CameraFrame]], rate_hz: float, node,
                 outputs: tuple[str, ...], node_name: str = '/perception_node',
                 start_timeout: float = 120.0) -> dict[str, Session]:
    """
    Play several cameras' frames, the i-th of each together, into one node serving them all.

    Each camera publishes on `<name>/image`, ... and its outputs are collected from
    `node_name/<name>/...` (the unnamed camera '': the node's own topics); each Session has
    its camera's /diagnostics status.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from ..node.image_codec import array_to_msg, image_to_array
    from ..node.perception import camera_status_name, prefix, STATUS_NAME
    statuses: dict[str, dict[str, str]] = {}

    def on_diagnostics(msg):
        for status in msg.status:
            statuses[status.name] = {kv.key: kv.value for kv in status.values}
    with Player('depthgate_camera') as player:
        at = {c: f'{node_name}/{prefix(c)}' for c in cameras}
        for c in cameras:
            for topic in outputs:
                player.collect(Image, at[c] + topic, depth=20)
            player.collect(DiagnosticArray, at[c] + 'frame_info', depth=20)
        player.collect(DiagnosticArray, '/diagnostics', depth=10, keep=False,
                       on_message=on_diagnostics)
        pubs = {c: {t: player.publisher(m, prefix(c) + t, depth=5) for t, m in (
            ('image', Image), ('depth', Image), ('camera_info', CameraInfo))} for c in cameras}
        ready = player.wait_for(lambda: not node.running() or all(
            p['image'].get_subscription_count() and p['depth'].get_subscription_count()
            for p in pubs.values()) and all(
            player.peer.count_publishers(at[c] + outputs[0]) for c in cameras),
            timeout=start_timeout, period=0.05)
        if not ready or not node.running():
            raise RuntimeError('perception_node did not come up:\n' + node.log)
        time.sleep(1.0)                              # and the reverse discovery
        sent: dict[str, dict[int, float]] = {c: {} for c in cameras}
        t_start = time.monotonic()
        for i in range(max(len(f) for f in cameras.values())):
            for c, frames in cameras.items():
                if i >= len(frames):
                    continue
                frame = frames[i]
                header = Header(frame_id=f'{prefix(c).replace("/", "_")}camera_optical')
                header.stamp.sec, header.stamp.nanosec = divmod(frame.stamp_ns, NS)
                h, w = frame.rgb.shape[:2]
                pubs[c]['camera_info'].publish(_camera_info(header, w, h, frame.k))
                if frame.depth is not None:
                    pubs[c]['depth'].publish(array_to_msg(frame.depth, '32FC1', header))
                    time.sleep(0.02)
                sent[c][frame.stamp_ns] = time.monotonic()
                pubs[c]['image'].publish(array_to_msg(frame.rgb, 'rgb8', header))
            time.sleep(max(0.0, t_start + (i + 1) / rate_hz - time.monotonic()))
        player.wait_for(lambda: all(len(player.by_stamp(at[c] + 'frame_info')) >= len(sent[c])
                                    for c in cameras), timeout=10 + 2 / rate_hz, period=0.05)
        time.sleep(1.2)                              # one more /diagnostics
        sessions = {}
        for c in cameras:
            got = {t: {s: (a, image_to_array(m)) for s, (a, m) in player.by_stamp(
                at[c] + t).items()} for t in outputs}
            infos = {s: {kv.key: kv.value for kv in m.status[0].values}
                     for s, (_, m) in player.by_stamp(at[c] + 'frame_info').items()}
            status = statuses.get(camera_status_name(c) if c else STATUS_NAME, {})
            sessions[c] = Session(sent[c], got, infos, dict(status))
        return sessions


def _camera_info(header, width: int, height: int, k: list[float]):
    from sensor_msgs.msg import CameraInfo
    info = CameraInfo(header=header, width=width, height=height, distortion_model='plumb_bob')
    info.k = list(k)
    info.p = list(k[:3]) + [0.0] + list(k[3:6]) + [0.0] + list(k[6:]) + [0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    return info
