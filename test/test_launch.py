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
launch/perception.launch.py under the real `launch` and `launch_ros`, as `ros2 launch` runs it.

Parameters read back through the node's own parameter services, then SIGINT.
"""
import importlib.util
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

from depthgate_ros.node.parameters import PARAMETERS
from depthgate_ros.tools.dds import ros_environment
from depthgate_ros.tools.player import Player
from lifecycle_msgs.srv import GetState
import pytest
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
import yaml

# nodes in processes of their own, timed: one worker, in turn (test_demo.py says why)
pytestmark = pytest.mark.xdist_group('processes')

ROOT = Path(__file__).resolve().parents[1]
NODE = '/depthgate/perception_node'


def launch_path() -> str | None:
    """
    PYTHONPATH entries that provide launch/launch_ros.

    None needed when installed (a ROS 2 installation), else the upstream wheels (pure Python,
    imported from the .whl files) from DEPTHGATE_LAUNCH_WHEELS or the folder development machines
    keep beside the checkout; None when neither has them.
    """
    if importlib.util.find_spec('launch_ros') is not None:
        return ''
    folder = Path(os.environ.get('DEPTHGATE_LAUNCH_WHEELS', ROOT.parent / 'shared' /
                                 'ros-launch'))
    wheels = sorted(folder.glob('*.whl'))
    if not any(w.name.startswith('launch_ros-') for w in wheels):
        return None
    return os.pathsep.join(map(str, wheels))


LAUNCH_PATH = launch_path()
needs_launch = pytest.mark.skipif(
    LAUNCH_PATH is None, reason='launch_ros is not installed and no launch/launch_ros wheels '
    'were found (a ROS 2 installation provides them; or set DEPTHGATE_LAUNCH_WHEELS)')

# What `ros2 launch depthgate_ros perception.launch.py ARGS` does.
RUNNER = textwrap.dedent("""
    import sys
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource
    from ament_index_python.packages import get_package_share_directory
    path = get_package_share_directory("depthgate_ros") + "/launch/perception.launch.py"
    args = [a.split(":=", 1) for a in sys.argv[1:]]
    service = LaunchService(argv=sys.argv[1:])
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        AnyLaunchDescriptionSource(path), launch_arguments=args)]))
    sys.exit(service.run())
""")


def test_yaml_declares_exactly_the_node_parameters_under_any_name():
    params = yaml.safe_load((ROOT / 'config' / 'perception.yaml').read_text())
    assert list(params) == ['/**']                     # applies under any namespace
    assert set(params['/**']['ros__parameters']) == set(PARAMETERS)


@pytest.fixture(scope='module')
def prefix(tmp_path_factory):
    """Lay out an ament prefix as `colcon build` installs the package."""
    root = tmp_path_factory.mktemp('install')
    index = root / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'depthgate_ros').touch()
    share = root / 'share' / 'depthgate_ros'
    shutil.copytree(ROOT / 'launch', share / 'launch')
    shutil.copytree(ROOT / 'config', share / 'config')
    shutil.copy(ROOT / 'package.xml', share)
    lib = root / 'lib' / 'depthgate_ros'
    lib.mkdir(parents=True)
    # the node executables as setup.py declares them (its console scripts)
    scripts = dict(re.findall(r"'(perception\w*node) = ([\w.]+):main'",
                              (ROOT / 'setup.py').read_text()))
    assert set(scripts) == {'perception_node', 'perception_lifecycle_node'}
    for name, module in scripts.items():
        exe = lib / name
        exe.write_text(f'#!{sys.executable}\nimport sys\n'
                       f'from {module} import main\nsys.exit(main())\n')
        exe.chmod(0o755)
    return root


def get_parameters(h: Player, names: list[str]) -> dict:
    client = h.peer.create_client(GetParameters, f'{NODE}/get_parameters')
    assert client.wait_for_service(timeout_sec=60), "the node's parameter service never came"
    future = client.call_async(GetParameters.Request(names=names))
    assert h.wait_for(future.done, timeout=20)
    out = {}
    for name, v in zip(names, future.result().values):
        out[name] = {ParameterType.PARAMETER_INTEGER: v.integer_value,
                     ParameterType.PARAMETER_STRING: v.string_value,
                     ParameterType.PARAMETER_STRING_ARRAY: list(v.string_array_value),
                     ParameterType.PARAMETER_DOUBLE: v.double_value,
                     ParameterType.PARAMETER_DOUBLE_ARRAY: list(v.double_array_value),
                     ParameterType.PARAMETER_BOOL: v.bool_value}.get(v.type)
    return out


def run_launch(prefix: Path, args: list[str], check) -> str:
    env = ros_environment(profile=False)
    env['AMENT_PREFIX_PATH'] = str(prefix)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [LAUNCH_PATH, env.get('PYTHONPATH')]))
    # its own session, so that SIGINT can go to the process group as Ctrl-C in a terminal
    # sends it (launch then leaves the node's SIGINT to the terminal, as it does there)
    proc = subprocess.Popen([sys.executable, '-c', RUNNER, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    h = Player()
    try:
        check(h)
    finally:
        h.close()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert 'process has finished cleanly' in out, out
    assert 'Traceback' not in out and '[ERROR]' not in out, out
    return out


@needs_launch
def test_launch_applies_the_shipped_parameters_file(prefix):
    shipped = yaml.safe_load((ROOT / 'config' / 'perception.yaml').read_text())
    shipped = shipped['/**']['ros__parameters']

    def check(h):
        # every value the file holds, typed as the node declares it (model_path '': bundled)
        got = get_parameters(h, list(shipped))
        assert got == shipped
    run_launch(prefix, [], check)


@needs_launch
def test_a_user_params_file_sets_model_path_and_arguments_override_only_when_given(
        prefix, tiny_checkpoint, tmp_path):
    user = tmp_path / 'mine.yaml'
    user.write_text(yaml.safe_dump({'/depthgate/perception_node': {'ros__parameters': {
        'model_path': str(tiny_checkpoint), 'device': 'cpu', 'num_threads': 1,
        'mask_classes': ['car']}}}))

    def from_file(h):
        got = get_parameters(h, ['model_path', 'device', 'num_threads', 'mask_classes'])
        assert got == {'model_path': str(tiny_checkpoint), 'device': 'cpu', 'num_threads': 1,
                       'mask_classes': ['car']}, got
    run_launch(prefix, [f'params_file:={user}'], from_file)

    def overridden(h):
        got = get_parameters(h, ['model_path', 'device', 'num_threads'])
        assert got == {'model_path': str(tiny_checkpoint), 'device': 'auto',
                       'num_threads': 1}, got
    # the argument given wins over the file; the one not given leaves the file's value
    out = run_launch(prefix, [f'params_file:={user}', 'device:=auto', 'log_level:=debug',
                              'dds_profile:=large_images'], overridden)
    assert '[DEBUG]' in out                                # log_level reached the node


@needs_launch
def test_managed_starts_the_lifecycle_node_and_drives_it_to_active(prefix, tiny_checkpoint,
                                                                   tmp_path):
    user = tmp_path / 'mine.yaml'
    user.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'model_path': str(tiny_checkpoint), 'device': 'cpu'}}}))

    def active(h):
        client = h.peer.create_client(GetState, f'{NODE}/get_state')
        assert client.wait_for_service(timeout_sec=60), 'no lifecycle services: not managed'

        def state():
            future = client.call_async(GetState.Request())
            assert h.wait_for(future.done, timeout=20)
            return future.result().current_state.label
        assert h.wait_for(lambda: state() == 'active', timeout=60, period=0.5), state()
        # active means subscribed, under the launch file's remapping
        assert h.wait_for(lambda: h.peer.count_subscribers('/camera/image_raw') == 1)
    out = run_launch(prefix, [f'params_file:={user}', 'managed:=true'], active)
    assert 'perception_lifecycle_node' in out


@needs_launch
def test_cameras_serves_a_camera_ring_remapped_by_the_driver_layout(prefix, tiny_checkpoint,
                                                                    tmp_path):
    # tried: three cameras as a RealSense driver lays out its topics, one image on each
    from depthgate_ros.node.image_codec import array_to_msg
    import numpy as np
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    user = tmp_path / 'mine.yaml'
    # a camera's own setting nested under its name, as README shows it
    user.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'model_path': str(tiny_checkpoint), 'device': 'cpu', 'num_threads': 1,
        'left': {'depth_unit_scale': 0.01}}}}))
    names = ('front', 'left', 'right')

    def served(h):
        assert get_parameters(h, ['cameras', 'left.depth_unit_scale',
                                  'front.depth_unit_scale']) == {
            'cameras': list(names), 'left.depth_unit_scale': 0.01,
            'front.depth_unit_scale': 0.001}
        pubs = {n: h.publisher(Image, f'/{n}/color/image_raw') for n in names}
        for n in names:
            h.collect(Image, f'{NODE}/{n}/labels')
            assert h.wait_for(lambda n=n: h.peer.count_subscribers(
                f'/{n}/aligned_depth_to_color/image_raw') == 1, timeout=30)
            h.wait_for_subscribers(pubs[n])
        assert h.wait_for(lambda: all(h.peer.count_publishers(f'{NODE}/{n}/labels') == 1
                                      for n in names), timeout=30)
        time.sleep(1.0)
        for k, n in enumerate(names):
            header = Header(frame_id=f'{n}_optical')
            header.stamp.sec = 10 + k
            msg = array_to_msg(np.full((48, 64, 3), 60 * k, np.uint8), 'rgb8', header)
            pubs[n].publish(msg)
        assert h.wait_for(lambda: all(h.messages(f'{NODE}/{n}/labels') for n in names),
                          timeout=30)
        # each camera's outputs carry its own image's header
        headers = [h.messages(f'{NODE}/{n}/labels')[0][1].header for n in names]
        assert [(x.stamp.sec, x.frame_id) for x in headers] == [
            (10, 'front_optical'), (11, 'left_optical'), (12, 'right_optical')]
    run_launch(prefix, [f'params_file:={user}', 'cameras:=[front, left, right]',
                        'image_pattern:=/{name}/color/image_raw',
                        'depth_pattern:=/{name}/aligned_depth_to_color/image_raw'], served)
