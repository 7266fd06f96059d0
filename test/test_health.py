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

"""The node's health bookkeeping (ros/health.py) on a controlled clock, without DDS."""
from depthgate_ros.node import health as health_module
from depthgate_ros.node.health import Health
import pytest


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(health_module.time, 'monotonic', c)
    return c


def test_transport_warns_once_per_outage_and_only_while_matched(clock):
    h = Health()
    assert h.transport_problem(publishers=0) is None          # nobody matched: no window
    clock.t += 10
    assert h.transport_problem(publishers=0) is None
    assert h.transport_problem(publishers=1) is None          # matched now: window starts
    clock.t += 2.9
    assert h.transport_problem(publishers=1) is None          # not 3 s yet
    clock.t += 0.2
    assert h.transport_problem(publishers=1) == (0, 0)        # 3.1 s, nothing arrived
    clock.t += 3.1
    assert h.transport_problem(publishers=1) is None          # said once
    for k in range(5):                                        # images arrive again
        h.received(k * 100_000_000, replaced=False)
    clock.t += 3.1
    assert h.transport_problem(publishers=1) is None          # recovered
    h.received(10**9, replaced=False)
    h.lost(4)                                                 # DDS: more lost than received
    clock.t += 3.1
    assert h.transport_problem(publishers=1) == (1, 4)


def test_diagnostics_over_the_last_window(clock):
    h = Health(span_s=10.0)
    for k in range(4):
        h.received(k * 100_000_000, replaced=k == 3)
        clock.t += 1.0
        h.processed(clock.t, latency_s=0.1 * (k + 1), model_s=0.05)
    h.count('depth_errors')
    h.failed()
    d = h.diagnostics()
    assert d['processed_rate_hz'] == pytest.approx(0.4) and d['input_rate_hz'] == 0.4
    assert d['latency_p50_ms'] == pytest.approx(250.0)      # 100, 200, 300, 400 ms
    assert d['model_p50_ms'] == pytest.approx(50.0)
    assert (d['received'], d['processed'], d['replaced'], d['failed'], d['depth_errors']) == (
        4, 4, 1, 1, 1)
    clock.t += 20.0                                          # all of it older than the span
    later = h.diagnostics()
    assert later['processed_rate_hz'] == 0 and later['latency_p50_ms'] != later['latency_p50_ms']
    assert later['processed'] == 4                           # counters are since configure
