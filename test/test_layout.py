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

"""The layering docs/architecture.md claims, checked on the source."""
import ast
from pathlib import Path
import re

PACKAGE = Path(__file__).resolve().parents[1] / 'depthgate_ros'
ROS_ROOTS = {'rclpy', 'rosbags', 'launch', 'launch_ros', 'rcl_interfaces', 'builtin_interfaces',
             'lifecycle_msgs'}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names


def _is_ros(name: str) -> bool:
    return name in ROS_ROOTS or name.endswith('_msgs')


# The node (node/) and the recording and benchmark tools around it (tools/) are the only
# places that import ROS.
ROS_HOMES = ('node', 'tools')


def _package_imports(path: Path) -> set[str]:
    """Return the depthgate_ros modules `path` imports, as dotted paths below the package."""
    here = path.relative_to(PACKAGE).parent.parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                names.add('.'.join(base + tuple((node.module or '').split('.'))).strip('.'))
            elif node.module and node.module.startswith('depthgate_ros.'):
                names.add(node.module.removeprefix('depthgate_ros.'))
    return names


def test_only_the_node_and_its_tools_import_ros():
    outside = [p for p in PACKAGE.rglob('*.py')
               if p.relative_to(PACKAGE).parts[0] not in ROS_HOMES]
    assert outside, 'no modules found'
    offenders = {str(p.relative_to(PACKAGE)): sorted(filter(_is_ros, _imports(p)))
                 for p in outside}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_node_does_not_import_its_tools():
    node = list((PACKAGE / 'node').glob('*.py'))
    assert len(node) >= 8
    offenders = {p.name: sorted(m for m in _package_imports(p) if m.startswith('tools'))
                 for p in node}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_one_rclpy_participant_besides_the_node():
    # rclpy contexts are made in two places: the node's own main and the player
    makers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob('*.py')
                    if 'rclpy.init(' in p.read_text() or 'rclpy.Context(' in p.read_text())
    assert makers == ['node/perception_node.py', 'tools/player.py']
    tests = Path(__file__).parent
    assert not [p.name for p in tests.glob('*.py')
                if p.name != 'test_layout.py' and 'rclpy.init(' in p.read_text()]


def test_console_scripts_live_in_cli_except_the_nodes():
    setup = (PACKAGE.parent / 'setup.py').read_text()
    scripts = dict(re.findall(r"'([\w-]+) = (depthgate_ros[\w.]+):main'", setup))
    assert len(scripts) >= 12
    nodes = {'perception_node', 'perception_lifecycle_node'}
    assert {s for s, m in scripts.items() if not m.startswith('depthgate_ros.cli.')} == nodes
    for script, module in scripts.items():
        assert (PACKAGE.parent / (module.replace('.', '/') + '.py')).is_file(), script
    # and no library module reaches up into the command line
    library = [p for p in PACKAGE.rglob('*.py') if 'cli' not in p.relative_to(PACKAGE).parts]
    assert not [str(p.relative_to(PACKAGE)) for p in library
                if re.search(r'from \.+cli\b|depthgate_ros\.cli\b', p.read_text())]
