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

"""Stamp pairing of images with optional depth, independent of rclpy."""
from depthgate_ros.pairing import DepthPairing, NS
import pytest

MS = NS // 1000


def test_closest_partner_within_slop_wins():
    p = DepthPairing(slop_s=0.02, timeout_s=0.5)
    for t in (100, 133, 166):
        p.add(t * MS, f'd{t}', arrival_ns=t * MS)
    assert p.match(135 * MS).item == 'd133'
    assert p.match(150 * MS).item == 'd166'           # 16 ms beats 17 ms
    assert p.match(200 * MS) is None                 # 34 ms away: outside the slop


def test_exact_stamps_with_zero_slop():
    p = DepthPairing(slop_s=0.0)
    p.add(5 * NS, 'a', 5 * NS)
    assert p.match(5 * NS).item == 'a'
    assert p.match(5 * NS + 1) is None


def test_queue_is_bounded():
    p = DepthPairing(slop_s=0.001, queue_size=3)
    for i in range(10):
        p.add(i * NS, i, i * NS)
    assert p.match(0) is None and p.match(9 * NS).item == 9
    assert len(p.queue) == 3


def test_alive_and_waiting_follow_the_timeout():
    p = DepthPairing(slop_s=0.01, timeout_s=0.5)
    assert not p.alive(0) and not p.should_wait(0, 0)     # never configured: monocular now
    p.add(1 * NS, 'd', arrival_ns=1 * NS)
    assert p.alive(1 * NS + 400 * MS)
    assert p.should_wait(image_arrival_ns=1 * NS + 300 * MS, now_ns=1 * NS + 400 * MS)
    # the image waited its full timeout: give up on this one
    assert not p.should_wait(image_arrival_ns=1 * NS, now_ns=1 * NS + 500 * MS)
    assert not p.alive(1 * NS + 501 * MS)                 # depth died
    p.add(3 * NS, 'back', arrival_ns=3 * NS)              # and came back
    assert p.alive(3 * NS) and p.match(3 * NS).item == 'back'


def test_reset_and_bad_settings():
    p = DepthPairing()
    p.add(1, 'x', 1)
    p.reset()
    assert p.match(1) is None and not p.alive(1)
    with pytest.raises(ValueError):
        DepthPairing(slop_s=-1)


def test_after_a_gap_an_expected_partner_gets_the_slop():
    # depth went silent (last message at 1 s, timeout 0.5 s); at 5 s it resumes, and the
    # image's partner lands 1 ms after the image: the worker must still be waiting then.
    p = DepthPairing(slop_s=0.05, timeout_s=0.5)
    p.add(1 * NS, 'old', arrival_ns=1 * NS)
    image_arrival = 5 * NS
    assert not p.alive(image_arrival)
    assert p.should_wait(image_arrival, image_arrival + 1 * MS, expected=True)
    # no partner within the slop: give up after 50 ms, not after depth_timeout
    assert p.should_wait(image_arrival, image_arrival + 49 * MS, expected=True)
    assert not p.should_wait(image_arrival, image_arrival + 50 * MS, expected=True)
    # nobody publishes depth: monocular at once
    assert not p.should_wait(image_arrival, image_arrival + 1 * MS, expected=False)
    p.add(5 * NS, 'resumed', arrival_ns=image_arrival + 1 * MS)
    assert p.match(5 * NS).item == 'resumed'
