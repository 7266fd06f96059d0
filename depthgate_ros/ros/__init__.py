"""ROS 2 interface: the only package that imports rclpy and ROS messages."""
