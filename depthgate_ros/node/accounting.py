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
Where each camera image went: processed, replaced in the node, lost in transport, or never seen.

A node that counts only what reaches its callback under-reports: with a history-1 reader
queue, images superseded before the executor takes them vanish silently, and best-effort
images that lose a fragment never arrive. Two independent witnesses fill the gap:
- the camera's stamps: a camera publishes at a steady rate, so a stamp gap of k periods means
  k - 1 images were published and never seen here;
- DDS's message-lost event (samples the reader knows it missed, e.g. a fragment lost).
Each sees only part of the loss (stamps: nothing before the first image or across a pause;
DDS: nothing superseded in the reader queue), so the unseen count is the larger of the two.

Pure Python, no rclpy: unit-tested on its own.
"""
from __future__ import annotations

from collections import deque
from statistics import median

NS = 1_000_000_000


def camera_period_ns(deltas: list[int]) -> float | None:
    """
    Estimate the camera's frame period from positive stamp differences, robust to gaps.

    The short differences set the scale, and every difference is a whole number of periods.
    """
    deltas = sorted(d for d in deltas if d > 0)
    if len(deltas) < 3:
        return None
    short = deltas[len(deltas) // 5]                     # 20th percentile
    return median(d / max(1, round(d / short)) for d in deltas)


class StreamAccounting:
    """Counts for one image stream. Not thread-safe: the node calls it under its lock."""

    def __init__(self, window: int = 200, pause_s: float = 2.0, pause_periods: int = 30):
        # A gap longer than either of these is the camera pausing (or restarting at another
        # rate), not images going missing; long transport outages are DDS's to report.
        self.pause_ns, self.pause_periods = int(pause_s * NS), pause_periods
        self._deltas: deque[int] = deque(maxlen=window)
        self._pending: list[int] = []                    # gaps seen before the period is known
        self._last_stamp: int | None = None
        self.received = self.processed = self.replaced = self.failed = 0
        self.missed_by_stamps = 0
        self.lost_in_transport = 0

    def on_received(self, stamp_ns: int) -> None:
        self.received += 1
        if stamp_ns <= 0:
            return
        last, self._last_stamp = self._last_stamp, stamp_ns
        if last is None or stamp_ns <= last:              # first image, or time went back
            return
        delta = stamp_ns - last
        self._deltas.append(delta)
        self._pending.append(delta)
        period = self.period_ns()
        if period is None:
            return
        for d in self._pending:
            if d <= min(self.pause_ns, self.pause_periods * period):
                self.missed_by_stamps += max(0, round(d / period) - 1)
        self._pending.clear()

    def on_lost(self, total_count: int) -> None:
        """DDS message-lost total for the subscription (cumulative)."""
        self.lost_in_transport = max(self.lost_in_transport, int(total_count))

    def period_ns(self) -> float | None:
        return camera_period_ns(list(self._deltas))

    @property
    def unseen(self) -> int:
        return max(self.missed_by_stamps, self.lost_in_transport)

    def snapshot(self) -> dict:
        period = self.period_ns()
        return {
            'camera_rate_hz': NS / period if period else float('nan'),
            'received': self.received, 'processed': self.processed,
            'replaced': self.replaced, 'failed': self.failed,
            'lost_in_transport': self.lost_in_transport,
            'missed_by_stamps': self.missed_by_stamps,
            # every image that produced no output, as far as stamps and DDS can tell
            'dropped': self.replaced + self.failed + self.unseen,
        }
