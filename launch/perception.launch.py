"""ros2 launch depthgate_ros perception.launch.py [image:=/camera/color/image_raw]
[depth:=/camera/aligned_depth_to_color/image_raw] [model_path:=...] [device:=cuda]"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("depthgate_ros")
    args = [
        DeclareLaunchArgument("namespace", default_value="depthgate"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "perception.yaml")),
        DeclareLaunchArgument("image", default_value="/camera/image_raw"),
        DeclareLaunchArgument("depth", default_value="/camera/depth/image_raw"),
        DeclareLaunchArgument("disparity", default_value="/camera/disparity"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info"),
        DeclareLaunchArgument("model_path", default_value=""),
        DeclareLaunchArgument("device", default_value="auto"),
    ]
    node = Node(
        package="depthgate_ros",
        executable="perception_node",
        name="perception_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"),
                    {"model_path": LaunchConfiguration("model_path"),
                     "device": LaunchConfiguration("device")}],
        remappings=[("image", LaunchConfiguration("image")),
                    ("depth", LaunchConfiguration("depth")),
                    ("disparity", LaunchConfiguration("disparity")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
        output="screen",
    )
    return LaunchDescription(args + [node])
