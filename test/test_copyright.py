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
Licence: LICENSE is the Apache License 2.0.

package.xml and setup.py say so, and every Python file opens with the Apache copyright header (what
ament_copyright checks in a ROS workspace; its wheel is not installable here).
"""
from pathlib import Path
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
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


def python_files():
    for folder in ('depthgate_ros', 'launch', 'test', 'scripts'):
        yield from (ROOT / folder).rglob('*.py')
    yield ROOT / 'setup.py'


def test_every_python_file_has_the_header():
    missing = []
    for path in python_files():
        text = path.read_text()
        if text.startswith('#!'):
            text = text.split('\n', 1)[1]
        if not text.startswith(HEADER):
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f'no Apache-2.0 header: {missing}'


def test_licence_is_declared_once_and_the_same_everywhere():
    assert 'Apache License' in (ROOT / 'LICENSE').read_text()[:200]
    assert 'Version 2.0, January 2004' in (ROOT / 'LICENSE').read_text()[:300]
    licences = [e.text for e in ET.parse(ROOT / 'package.xml').getroot().iter('license')]
    assert licences == ['Apache-2.0']
    assert "license='Apache-2.0'" in (ROOT / 'setup.py').read_text()
