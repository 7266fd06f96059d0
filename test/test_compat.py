"""The distribution compatibility module: today's layout, and Humble's simulated."""
import importlib
import sys
import types

import depthgate_ros.ros.compat as compat


def test_current_layout_is_used_when_present():
    from rclpy.event_handler import SubscriptionEventCallbacks
    assert compat.SubscriptionEventCallbacks is SubscriptionEventCallbacks


def test_humble_layout_falls_back_to_qos_event(monkeypatch):
    # Humble: no rclpy.event_handler; the class lives in rclpy.qos_event
    humble = types.ModuleType("rclpy.qos_event")

    class HumbleCallbacks:
        pass
    humble.SubscriptionEventCallbacks = HumbleCallbacks
    monkeypatch.setitem(sys.modules, "rclpy.event_handler", None)     # import fails
    monkeypatch.setitem(sys.modules, "rclpy.qos_event", humble)
    try:
        assert importlib.reload(compat).SubscriptionEventCallbacks is HumbleCallbacks
    finally:
        monkeypatch.undo()
        importlib.reload(compat)
    assert compat.SubscriptionEventCallbacks is not HumbleCallbacks
