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
ament_flake8 over the whole tree with ament's own configuration, as `colcon test` runs it.

Quotes are single, as ament's flake8-quotes default wants. The linter is first shown a file with
known faults, so a missing flake8 plugin cannot make the tree pass by checking nothing.
"""
from pathlib import Path

from ament_flake8.main import main_with_errors
import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE = ['depthgate_ros', 'launch', 'test', 'setup.py']

# Faults for every plugin family that ROS's ament_flake8 depends on.
FAULTY = '''\
import sys
import os


def f(l):
    """returns its argument"""
    print("double quotes")
    return dict(a=1), list, os, sys, l


def g(list):
    return [x for x in list if x] + ['LONG']
'''.replace('LONG', 'z' * 80)
EXPECTED = {
    'I100',   # flake8-import-order (google style): os before sys
    'Q000',   # flake8-quotes: single quotes
    'D400',   # flake8-docstrings: summary ends with a period
    'D401',   # flake8-docstrings: imperative mood
    'C408',   # flake8-comprehensions: dict() call
    'A002',   # flake8-builtins: argument shadows `list`
    'E741',   # pycodestyle: ambiguous name
    'E501',   # pycodestyle: longer than ament's 99 characters
}


def test_flake8_reports_each_plugins_fault_in_a_bad_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'faulty.py').write_text(FAULTY)
    rc, errors = main_with_errors(argv=['faulty.py'])
    found = {e.split(': ', 1)[1].split()[0] for e in errors}
    assert rc == 1
    assert EXPECTED <= found, f'not reported: {sorted(EXPECTED - found)}'


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(monkeypatch):
    # ament walks the working directory for AMENT_IGNORE markers, as under colcon.
    monkeypatch.chdir(ROOT)
    rc, errors = main_with_errors(argv=TREE)
    assert rc == 0, f'{len(errors)} flake8 findings:\n' + '\n'.join(errors)


def test_tree_covers_every_python_file():
    outside = [str(p.relative_to(ROOT)) for p in ROOT.rglob('*.py')
               if not any(part.startswith('.') or part in ('build', 'install', 'log')
                          for part in p.relative_to(ROOT).parts)
               and p.relative_to(ROOT).parts[0] not in TREE]
    assert not outside, f'Python files the linters do not see: {outside}'
