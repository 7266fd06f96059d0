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
When to log that a per-frame value (the gate source) changed.

Per frame the gate source is on ~/frame_info; the log should say only what an operator needs:
that the source changed and stayed changed. A value must hold for `frames` consecutive frames
(debounce), and announcements are at least `min_interval_s` apart (throttle; a change that
still holds when the interval is over is announced then).
"""
from __future__ import annotations


class SwitchLog:
    def __init__(self, frames: int = 5, min_interval_s: float = 10.0):
        self.frames, self.min_interval_s = frames, min_interval_s
        self.announced = None
        self._candidate, self._count = None, 0
        self._last_s: float | None = None

    def update(self, value, now_s: float):
        """(old, new) when the change is to be logged now, else None."""
        if value == self.announced:
            self._candidate, self._count = None, 0
            return None
        if value != self._candidate:
            self._candidate, self._count = value, 0
        self._count += 1
        if self._count < self.frames:
            return None
        if self._last_s is not None and now_s - self._last_s < self.min_interval_s:
            return None
        old, self.announced, self._last_s = self.announced, value, now_s
        self._candidate, self._count = None, 0
        return old, value
