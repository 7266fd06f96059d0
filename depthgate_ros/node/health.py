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
perception_node's health: its account of every image, error counts, rates and latencies.

Thread-safe (callbacks, the worker and the diagnostics timer all report here) and free of
ROS types: perception.py turns `diagnostics()` into /diagnostics and logs `transport_problem`.
"""
from __future__ import annotations

from collections import deque
import threading
import time

from .accounting import StreamAccounting
from ..metrics import percentiles

# A matched image publisher that delivers (almost) nothing for this long earns a warning.
SILENCE_WARN_S = 3.0
ERRORS = ('errors', 'depth_errors', 'oom', 'stamp_warnings', 'incompatible_qos')


class Health:
    def __init__(self, span_s: float = 10.0):
        self.span_s = span_s                     # rates and latencies over this window
        self._lock = threading.Lock()
        self.accounting = StreamAccounting()
        self._errors = dict.fromkeys(ERRORS, 0)
        self._window: deque = deque(maxlen=200)     # (finish time, latency s, model s)
        self._received: deque = deque(maxlen=400)
        # (time, received, lost) at the last transport check, and whether it warned
        self._transport = (time.monotonic(), 0, 0)
        self._warned = False

    # -- reports --------------------------------------------------------------------------

    def received(self, stamp_ns: int, replaced: bool) -> None:
        with self._lock:
            self.accounting.on_received(stamp_ns)
            self.accounting.replaced += replaced
            self._received.append(time.monotonic())

    def lost(self, total_count: int) -> None:
        """Take DDS's running count of the samples it knows it missed (message_lost events)."""
        with self._lock:
            self.accounting.on_lost(total_count)

    def count(self, key: str) -> None:
        with self._lock:
            self._errors[key] += 1

    def failed(self) -> None:
        with self._lock:
            self.accounting.failed += 1

    def processed(self, done: float, latency_s: float, model_s: float) -> None:
        with self._lock:
            self.accounting.processed += 1
            self._window.append((done, latency_s, model_s))

    # -- readings -------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        """Counters since configure: the image accounting and the error counts."""
        with self._lock:
            return {**self.accounting.snapshot(), **self._errors}

    def diagnostics(self) -> dict:
        """Rates and latency percentiles over the last `span_s`, and every counter."""
        stats = self.stats
        window, received = self._recent()
        return {'camera_rate_hz': stats.pop('camera_rate_hz'),
                'input_rate_hz': received / self.span_s,
                'processed_rate_hz': len(window) / self.span_s, **_times(window), **stats}

    def _recent(self) -> tuple[list, int]:
        """Return the frames finished and the count of images received in the last span."""
        now = time.monotonic()
        with self._lock:
            return ([w for w in self._window if now - w[0] <= self.span_s],
                    sum(1 for t in self._received if now - t <= self.span_s))

    def transport_problem(self, publishers: int) -> tuple[int, int] | None:
        """
        Return (received, lost) when images stopped arriving, once until they recover.

        Called every few seconds with the number of matched image publishers: a window
        starts at a match, and a publisher whose images do not arrive for SILENCE_WARN_S
        (none at all, or more lost in transport than received) is reported.
        """
        now, stats = time.monotonic(), self.stats
        counts = (now, stats['received'], stats['lost_in_transport'])
        if publishers == 0:
            self._transport, self._warned = counts, False
            return None
        if now - self._transport[0] < SILENCE_WARN_S:
            return None
        _, received, lost = self._transport
        self._transport = counts
        got, lost = counts[1] - received, counts[2] - lost
        if got and lost <= got:
            self._warned = False
            return None
        if self._warned:
            return None
        self._warned = True
        return got, lost


def _times(window: list) -> dict:
    lat = percentiles([w[1] * 1e3 for w in window])
    return {'latency_p50_ms': lat['p50'], 'latency_p95_ms': lat['p95'],
            'model_p50_ms': percentiles([w[2] * 1e3 for w in window], (50,))['p50']}


def total(parts: list[dict], healths: list[Health]) -> dict:
    """
    Return the node's total over its cameras' `diagnostics()` (`parts`, in their order).

    Counters and rates are the sums of the parts, so the parts add up to it exactly; latency
    percentiles are over every camera's frames.
    """
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key.endswith('_rate_hz'):        # a camera not yet timed has NaN
            known = [v for v in values if v == v]
            out[key] = sum(known) if known else float('nan')
        elif not key.endswith('_ms'):
            out[key] = sum(values)
    window = [w for h in healths for w in h._recent()[0]]
    return {**out, **_times(window)}
