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
"""ament_pep257 over the whole tree with ament's own convention, as `colcon test` runs it."""
from ament_pep257.main import main
import pytest
from test_flake8 import FAULTY, ROOT, TREE


def test_pep257_reports_faults_in_a_bad_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'faulty.py').write_text(FAULTY)
    assert main(argv=['faulty.py']) == 1
    out = ''.join(capsys.readouterr())
    assert 'D400' in out and 'D401' in out and 'D403' in out


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    rc = main(argv=TREE)
    assert rc == 0, ''.join(capsys.readouterr())
