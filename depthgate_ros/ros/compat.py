"""What differs between the ROS 2 distributions this package runs on (Humble, Jazzy, Kilted).

Humble's rclpy has the QoS event classes in `rclpy.qos_event`; Iron and later moved them to
`rclpy.event_handler` (Humble's module name survives there only as a deprecated alias).
"""
try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:                                     # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

__all__ = ["SubscriptionEventCallbacks"]
