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
Start depthgate_ros' perception_node.

    ros2 launch depthgate_ros perception.launch.py [arg:=value ...]

Arguments (defaults in brackets):
  namespace     [depthgate]                            namespace of the node
  params_file   [<share>/config/perception.yaml]      ROS 2 parameters file
  image         [/camera/image_raw]                   remap of the colour image topic
  depth         [/camera/depth/image_raw]             remap of the REP 118 depth topic
  disparity     [/camera/disparity]                   remap of the stereo disparity topic
  camera_info   [/camera/camera_info]                 remap of the camera info topic
  cameras       ['' = as params_file says]            camera names, e.g. '[front, left, right]':
                one node serves them all; each camera's inputs are remapped by the patterns
  image_pattern [/{name}/image_raw]                   remap of each named camera's image
                topic, {name} standing for its name; likewise:
  depth_pattern [/{name}/depth/image_raw]
  disparity_pattern [/{name}/disparity]
  camera_info_pattern [/{name}/camera_info]
  model_path    ['' = as params_file says]            overrides params_file's model_path
  device        ['' = as params_file says]            overrides params_file's device
  log_level     [info]                                debug, info, warn, error or fatal
  dds_profile   ['' = environment unchanged]          Fast DDS profile for the node:
                'large_images' = the shipped config/fastdds_large_images.xml, or a path
  managed       [false]                               true: perception_lifecycle_node,
                driven through configure and activate by this launch
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition
import yaml

PACKAGE = 'depthgate_ros'
# Each input's topic, as a pattern on the camera's name: the single camera's default remap is
# the pattern for `camera`, a named camera's the pattern for its name.
REMAPS = {
    'image': ('/{name}/image_raw', 'colour image topic (sensor_msgs/Image)'),
    'depth': ('/{name}/depth/image_raw', 'depth topic, REP 118 (32FC1 m or 16UC1 mm)'),
    'disparity': ('/{name}/disparity', 'stereo disparity topic (stereo_msgs/DisparityImage)'),
    'camera_info': ('/{name}/camera_info', 'camera info topic (for ~/points)'),
}
# Launch arguments that override params_file, only when given a non-empty value.
OVERRIDES = {
    'model_path': 'checkpoint or .onnx file; empty: as params_file says (bundled model)',
    'device': 'auto, cpu or cuda[:N]; empty: as params_file says',
}


def _node(context):
    share = get_package_share_directory(PACKAGE)
    value = {name: LaunchConfiguration(name).perform(context)
             for name in ('params_file', 'log_level', 'dds_profile', *OVERRIDES)}
    overrides = {name: value[name] for name in OVERRIDES if value[name]}
    remappings = [(topic, LaunchConfiguration(topic)) for topic in REMAPS]
    if cameras := LaunchConfiguration('cameras').perform(context).strip():
        names = yaml.safe_load(cameras)
        names = [str(n) for n in (names if isinstance(names, list) else [names])]
        overrides['cameras'] = names
        remappings += [(f'{name}/{topic}', LaunchConfiguration(f'{topic}_pattern').perform(
            context).replace('{name}', name)) for name in names if name for topic in REMAPS]
    env = {}
    if value['dds_profile']:
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = os.path.join(
            share, 'config', 'fastdds_large_images.xml') \
            if value['dds_profile'] == 'large_images' else value['dds_profile']
    common = {
        'package': PACKAGE, 'name': 'perception_node',
        'namespace': LaunchConfiguration('namespace'),
        # later entries win: the file first, then only the overrides the user gave
        'parameters': [value['params_file']] + ([overrides] if overrides else []),
        'remappings': remappings,
        'ros_arguments': ['--log-level', value['log_level']],
        'additional_env': env, 'output': 'screen'}
    if LaunchConfiguration('managed').perform(context).lower() not in ('true', '1'):
        return [Node(executable='perception_node', **common)]
    node = LifecycleNode(executable='perception_lifecycle_node', **common)

    def transition(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition_id))
    # configure now, activate once it reached inactive (a failed configure stays there)
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state='inactive',
        entities=[transition(Transition.TRANSITION_ACTIVATE)]))
    return [activate, node, transition(Transition.TRANSITION_CONFIGURE)]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument('namespace', default_value='depthgate',
                              description='namespace of the node'),
        DeclareLaunchArgument(
            'params_file', default_value=os.path.join(share, 'config', 'perception.yaml'),
            description="ROS 2 parameters file (keys under /** or the node's full name)"),
        *[DeclareLaunchArgument(topic, default_value=pattern.format(name='camera'),
                                description=f'remap: {text}')
          for topic, (pattern, text) in REMAPS.items()],
        DeclareLaunchArgument(
            'cameras', default_value='',
            description="camera names, e.g. '[front, left, right]', served by one node; "
                        'empty: as params_file says'),
        *[DeclareLaunchArgument(f'{topic}_pattern', default_value=pattern,
                                description=f"each named camera's {text}, {{name}} standing "
                                'for its name')
          for topic, (pattern, text) in REMAPS.items()],
        *[DeclareLaunchArgument(name, default_value='', description=text)
          for name, text in OVERRIDES.items()],
        DeclareLaunchArgument('managed', default_value='false',
                              description='true: start perception_lifecycle_node and drive it '
                                          'to active (configure, then activate)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal'),
        DeclareLaunchArgument(
            'dds_profile', default_value='',
            description="Fast DDS XML profile for the node: 'large_images' for the shipped "
                        'config/fastdds_large_images.xml, a path, or empty to leave the '
                        'environment as it is'),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
