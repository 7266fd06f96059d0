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

"""Model files shipped inside the package."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_NAME = 'default.pt'


def bundled_checkpoint() -> Path | None:
    """Return the bundled default model, or None when this build ships none."""
    path = resources.files(__name__) / DEFAULT_NAME
    return Path(str(path)) if path.is_file() else None
