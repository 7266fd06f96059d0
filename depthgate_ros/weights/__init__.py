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

# Models selectable by name wherever a checkpoint path is taken (model_path, --checkpoint);
# README "Choosing a model" says what each was trained on.
BUNDLED = {
    # ESPNetv2 (width 2.0) from published Cityscapes weights under the head of a width-1.0
    # model trained on CamVid's real frames and on synthetic streets for depth
    # (config/train_street.yaml, train_street_balanced.yaml), class-balanced on
    # (config/train_street_wide.yaml), then on CamVid train + val
    # (config/train_street_wide_trainval.yaml), with class score offsets (depthgate-pack-model)
    'street': 'street.pt',
    # MobileNetV3-Large at stride 32, synthetic streets only (config/train_fast.yaml)
    'synthetic_fast': 'synthetic_fast.pt',
    # ResNet-18 at stride 8 as in the paper, synthetic streets only
    # (config/train_synthetic_sensors.yaml)
    'synthetic_resnet18': 'synthetic_resnet18.pt',
}
# Other names for them: `default` is what the node runs when model_path is empty; `fast` is
# the name synthetic_fast had before real-image training.
ALIASES = {'default': 'street', 'fast': 'synthetic_fast'}
NAMES = tuple(BUNDLED) + tuple(ALIASES)


def bundled_checkpoint(name: str = 'default') -> Path | None:
    """Return a bundled model's file, or None when this build does not ship it."""
    path = resources.files(__name__) / BUNDLED[ALIASES.get(name, name)]
    return Path(str(path)) if path.is_file() else None


def resolve_model(spec: str | Path) -> Path:
    """
    Return the file a model name or path means: a BUNDLED name, or else a path.

    A file literally called like a bundled model is still reachable as ./NAME.
    """
    if str(spec) in NAMES:
        path = bundled_checkpoint(str(spec))
        if path is None:
            raise FileNotFoundError(f'this build ships no bundled model {str(spec)!r} '
                                    f'({BUNDLED[ALIASES.get(str(spec), str(spec))]})')
        return path
    return Path(spec)
