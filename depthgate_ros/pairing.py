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
Pairing an image with an optional depth (or disparity) message by stamp.

message_filters' ApproximateTimeSynchronizer cannot express "pair if a partner exists,
otherwise go on without one after a timeout" (and is not installable here), so this is our
own, with the same expectations: a partner's stamp is within `slop` seconds of the image's
(slop 0 = exact stamps), a bounded queue of recent partners, the closest stamp wins.

Pure Python and nanosecond integers, no rclpy: unit-tested on its own.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000


def stamp_ns(msg) -> int:
    """Return the header stamp of a stamped message in nanoseconds."""
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


@dataclass
class Partner:
    stamp_ns: int
    arrival_ns: int
    item: Any


class DepthPairing:
    """
    Recent depth messages, and whether the depth stream is alive.

    The node asks `match(image_stamp)`; when nothing matches yet but depth is flowing, it may
    `should_wait()` for the partner until `depth_timeout` after the image arrived, then goes
    monocular. If depth is silent for `depth_timeout`, images wait at most `slop` (only while a
    depth publisher is matched), so the image whose partner arrives first after a gap is
    still paired.
    """

    def __init__(self, slop_s: float = 0.05, timeout_s: float = 0.5, queue_size: int = 10):
        self.configure(slop_s, timeout_s)
        self.queue: deque[Partner] = deque(maxlen=max(1, queue_size))
        self.last_arrival_ns: int | None = None

    def configure(self, slop_s: float, timeout_s: float) -> None:
        if slop_s < 0 or timeout_s < 0:
            raise ValueError(f'slop and timeout must be >= 0, got {slop_s}, {timeout_s}')
        self.slop_ns, self.timeout_ns = round(slop_s * NS), round(timeout_s * NS)

    def add(self, stamp_ns: int, item: Any, arrival_ns: int) -> None:
        self.queue.append(Partner(stamp_ns, arrival_ns, item))
        self.last_arrival_ns = arrival_ns

    def match(self, stamp_ns: int) -> Partner | None:
        best = None
        for p in self.queue:
            dt = abs(p.stamp_ns - stamp_ns)
            if dt <= self.slop_ns and (best is None or dt < abs(best.stamp_ns - stamp_ns)):
                best = p
        return best

    def alive(self, now_ns: int) -> bool:
        """Depth arrived within the last `depth_timeout`."""
        return self.last_arrival_ns is not None and now_ns - self.last_arrival_ns <= \
            self.timeout_ns

    def should_wait(self, image_arrival_ns: int, now_ns: int, expected: bool = False) -> bool:
        """
        Tell whether an image without a partner yet is worth waiting for.

        Worth it while depth flows and the image is younger than the timeout (depth pipelines
        often lag the colour camera by a frame). While depth is silent but `expected` (a depth
        publisher is matched), wait `slop` only: when depth resumes, its first partner may land
        just after the image.
        """
        age = now_ns - image_arrival_ns
        if self.alive(now_ns):
            return age < self.timeout_ns
        return expected and age < self.slop_ns

    def reset(self) -> None:
        """Forget everything (e.g. time jumped backwards: a bag restarted)."""
        self.queue.clear()
        self.last_arrival_ns = None
