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

"""Gate-switch logging: debounced (a change must hold) and throttled (announcements apart)."""
from depthgate_ros.node.switch_log import SwitchLog


def feed(log, values, t0=0.0, dt=0.1):
    return [(round(t0 + i * dt, 3), out) for i, v in enumerate(values)
            if (out := log.update(v, t0 + i * dt)) is not None]


def test_a_change_is_announced_once_it_holds():
    log = SwitchLog(frames=3, min_interval_s=10.0)
    said = feed(log, ['predicted'] * 5)
    assert said == [(0.2, (None, 'predicted'))]


def test_flapping_is_not_announced():
    log = SwitchLog(frames=3, min_interval_s=0.0)
    feed(log, ['predicted'] * 3)
    # alternating for 40 frames: never 3 in a row, so nothing is said
    assert feed(log, ['sensor', 'predicted'] * 20, t0=1.0) == []
    assert log.announced == 'predicted'


def test_announcements_are_throttled_but_not_lost():
    log = SwitchLog(frames=2, min_interval_s=10.0)
    assert feed(log, ['sensor'] * 2) == [(0.1, (None, 'sensor'))]
    # a real switch 1 s later holds on: announced when the 10 s interval is over
    said = feed(log, ['predicted'] * 200, t0=1.0)
    assert said == [(10.1, ('sensor', 'predicted'))]
