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
Image accounting (no rclpy).

The camera's rate from stamps, gaps as missed images, DDS losses, pauses. Expected values are
counted by hand from the sequences below.
"""
import math

from depthgate_ros.node.accounting import camera_period_ns, NS, StreamAccounting
import pytest

MS = NS // 1000


def test_period_from_stamps_with_gaps_and_jitter():
    # a 30 Hz camera (33.3 ms) with +-1 ms stamp jitter; most gaps are 1 frame, some 2 or 3
    period = NS / 30
    frames = [0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 14, 15, 16]
    jitter = [0, 1, -1, 0, 1, 0, -1, 0, 1, -1, 0, 0, 1]
    stamps = [round(f * period) + j * MS for f, j in zip(frames, jitter)]
    deltas = [b - a for a, b in zip(stamps, stamps[1:])]
    assert camera_period_ns(deltas) == pytest.approx(period, rel=0.02)
    assert camera_period_ns(deltas[:2]) is None               # too few to say


def test_missed_images_are_the_stamp_gaps():
    acc = StreamAccounting()
    period = 200 * MS                                          # 5 Hz
    received = [0, 1, 2, 3, 5, 6, 9, 10, 11, 15, 16]           # 1 + 2 + 3 = 6 missing
    for f in received:
        acc.on_received(1_000 * NS + f * period)
    snap = acc.snapshot()
    assert snap['camera_rate_hz'] == pytest.approx(5.0)
    assert snap['missed_by_stamps'] == 6
    assert snap['received'] == len(received)


def test_pauses_restarts_and_zero_stamps_are_not_losses():
    acc = StreamAccounting(pause_s=2.0)
    for f in range(5):
        acc.on_received(100 * NS + f * 100 * MS)
    acc.on_received(130 * NS)                                  # 30 s pause: not 300 losses
    acc.on_received(50 * NS)                                   # time went back: a restart
    acc.on_received(0)                                         # no stamp at all
    for f in range(1, 4):
        acc.on_received(50 * NS + f * 100 * MS)
    assert acc.snapshot()['missed_by_stamps'] == 0
    assert acc.received == 11


def test_a_slow_camera_pausing_is_not_counted_as_losses():
    # 1 Hz, then 8 s of nothing, then the same camera at 40 Hz: two different streams
    acc = StreamAccounting()
    stamps = [10 * NS + i * NS for i in range(5)] + [22 * NS + i * 25 * MS for i in range(40)]
    for t in stamps:
        acc.on_received(t)
    assert acc.missed_by_stamps == 0
    assert acc.snapshot()['camera_rate_hz'] == pytest.approx(40.0)


def test_unseen_is_the_larger_witness_and_dropped_adds_up():
    acc = StreamAccounting()
    for f in (0, 1, 2, 5):                                     # stamps: 2 missing
        acc.on_received(f * 100 * MS + NS)
    acc.on_lost(1)                                             # DDS saw one of them
    assert acc.unseen == 2
    acc.on_lost(7)                                             # cumulative: 7 lost in all
    acc.on_lost(3)                                             # an older total never lowers it
    assert acc.lost_in_transport == 7 and acc.unseen == 7
    acc.processed, acc.replaced, acc.failed = 2, 1, 1
    snap = acc.snapshot()
    assert snap['dropped'] == 1 + 1 + 7
    assert snap['processed'] + snap['replaced'] + snap['failed'] == snap['received']


def test_no_stamps_no_rate():
    acc = StreamAccounting()
    acc.on_received(NS)
    assert math.isnan(acc.snapshot()['camera_rate_hz'])
