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

"""The distribution compatibility module: today's layout, and Humble's simulated."""
import importlib
import sys
import types

import depthgate_ros.node.compat as compat


def test_current_layout_is_used_when_present():
    from rclpy.event_handler import SubscriptionEventCallbacks
    assert compat.SubscriptionEventCallbacks is SubscriptionEventCallbacks


def test_humble_layout_falls_back_to_qos_event(monkeypatch):
    # Humble: no rclpy.event_handler; the class lives in rclpy.qos_event
    humble = types.ModuleType('rclpy.qos_event')

    class HumbleCallbacks:
        pass
    humble.SubscriptionEventCallbacks = HumbleCallbacks
    monkeypatch.setitem(sys.modules, 'rclpy.event_handler', None)     # import fails
    monkeypatch.setitem(sys.modules, 'rclpy.qos_event', humble)
    try:
        assert importlib.reload(compat).SubscriptionEventCallbacks is HumbleCallbacks
    finally:
        monkeypatch.undo()
        importlib.reload(compat)
    assert compat.SubscriptionEventCallbacks is not HumbleCallbacks
