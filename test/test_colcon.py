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
`colcon build` of the package in a fresh workspace, as a ROS 2 user builds it.

Checks the install tree `ros2 run` and `ros2 launch` rely on.
"""
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLCON = Path(sys.executable).with_name('colcon')


@pytest.mark.skipif(not COLCON.exists(), reason='colcon is not installed (requirements-dev.txt)')
def test_colcon_build_installs_what_ros2_run_and_launch_need(tmp_path):
    src = tmp_path / 'src' / 'depthgate_ros'
    if (ROOT / '.git').exists():         # exactly what a clone holds
        files = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split('\0')
        for name in filter(None, files):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    else:
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns('.venv', '__pycache__'))
    build = subprocess.run([str(COLCON), 'build'], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    prefix = tmp_path / 'install' / 'depthgate_ros'
    scripts = set(re.findall(r'["\']([\w-]+) = depthgate_ros[\w.]*:main["\']',
                             (ROOT / 'setup.py').read_text()))
    assert 'perception_node' in scripts and 'train' not in scripts    # no generic names
    assert {p.name for p in (prefix / 'lib' / 'depthgate_ros').iterdir()} == scripts
    share = prefix / 'share' / 'depthgate_ros'
    assert (share / 'launch' / 'perception.launch.py').is_file()
    assert {p.name for p in (share / 'config').iterdir()} == {
        p.name for p in (ROOT / 'config').iterdir()}
    assert (share / 'package.xml').is_file()
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' /
            'depthgate_ros').is_file()
    # the bundled weights come from the install space, not from this checkout
    site = next(prefix.glob('lib/python3*/site-packages'))
    found = subprocess.run(
        [sys.executable, '-c', 'from depthgate_ros.weights import bundled_checkpoint;'
         'import depthgate_ros; print(bundled_checkpoint()); print(depthgate_ros.__file__)'],
        cwd=tmp_path, capture_output=True, text=True, env={'PYTHONPATH': str(site),
                                                           'PATH': '/usr/bin:/bin'})
    weights, package = found.stdout.split()
    assert Path(weights).is_file() and Path(weights).is_relative_to(site), found
    assert Path(package).is_relative_to(site)
