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
package.xml declares what the code imports.

Every third-party top-level import maps to a rosdep key (or to a stated reason it has none), and
every key maps back to an import.
"""
import ast
from pathlib import Path
import sys
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]

# import name -> rosdep key; None: not for rosdep, with the reason
RUN = {
    'rclpy': 'rclpy', 'rcl_interfaces': 'rcl_interfaces', 'sensor_msgs': 'sensor_msgs',
    'stereo_msgs': 'stereo_msgs', 'std_msgs': 'std_msgs', 'diagnostic_msgs': 'diagnostic_msgs',
    'lifecycle_msgs': 'lifecycle_msgs',
    'launch': 'launch', 'launch_ros': 'launch_ros', 'ament_index_python': 'ament_index_python',
    'numpy': 'python3-numpy', 'cv2': 'python3-opencv', 'yaml': 'python3-yaml',
    'torch': 'python3-torch', 'torchvision': 'python3-torchvision', 'PIL': 'python3-pil',
    'matplotlib': 'python3-matplotlib', 'tqdm': 'python3-tqdm',
    'rosbags': 'python3-rosbags-pip', 'onnxruntime': 'python3-onnxruntime-pip',
    'onnx': None,                # depthgate-export only; README: pip install onnx onnxscript
}
TEST = {
    'pytest': 'python3-pytest', 'rosgraph_msgs': 'rosgraph_msgs',
    'ament_flake8': 'ament_flake8', 'ament_pep257': 'ament_pep257',
    'cityscapesscripts': None,   # the metrics' reference implementation: requirements-dev.txt
    'mcap': None, 'mcap_ros2': None,   # an MCAP writer and reader not ours: requirements-dev
    'conftest': None, 'transport_peer': None,
    'test_flake8': None,   # the suite's own modules
}


def imports(*folders) -> set[str]:
    names = set()
    for folder in folders:
        for path in (ROOT / folder).rglob('*.py'):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split('.')[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split('.')[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != 'depthgate_ros'}


def declared(tag: str) -> set[str]:
    return {e.text for e in ET.parse(ROOT / 'package.xml').getroot().iter(tag)}


def test_every_runtime_import_is_declared_and_nothing_else():
    used = imports('depthgate_ros', 'launch')
    assert used <= set(RUN), f'imports with no rosdep mapping: {sorted(used - set(RUN))}'
    keys = {RUN[n] for n in used if RUN[n]}
    assert declared('exec_depend') == keys


def test_every_test_import_is_declared():
    used = imports('test') - imports('depthgate_ros', 'launch')
    assert used <= set(TEST), f'test imports with no mapping: {sorted(used - set(TEST))}'
    keys = {TEST[n] for n in used if TEST[n]}
    assert keys <= declared('test_depend')
