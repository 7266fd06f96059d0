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

"""The YAML files under config/ agree with the code that reads them."""
from pathlib import Path

from depthgate_ros.data.labels import CITYSCAPES_CLASSES
from depthgate_ros.model import ModelConfig
from depthgate_ros.model.config import PRESETS
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_training_configs_name_only_model_keys():
    # ModelConfig is the one description of the architecture; no YAML mirrors its defaults
    for path in sorted((ROOT / 'config').glob('*.yaml')):
        model = (yaml.safe_load(path.read_text()) or {}).get('model')
        if isinstance(model, dict):
            # `preset` names one of model/config.py's PRESETS, the one place it is spelled out
            assert set(model) - {'preset'} <= set(ModelConfig().to_dict()), path.name
            assert model.get('preset', 'fast') in PRESETS, path.name


def test_cityscapes_table_matches_cityscapesscripts():
    from cityscapesscripts.helpers.labels import trainId2label
    ours = [(name, color) for name, color in CITYSCAPES_CLASSES]
    theirs = [(trainId2label[t].name, tuple(trainId2label[t].color)) for t in range(19)]
    assert ours == theirs


def test_cityscapes_ids_and_instance_sizes_match_cityscapesscripts():
    from cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling import args
    from cityscapesscripts.helpers.labels import trainId2label
    from depthgate_ros.data.labels import CITYSCAPES_AVG_INSTANCE_SIZE, CITYSCAPES_LABEL_IDS
    assert CITYSCAPES_LABEL_IDS == tuple(trainId2label[t].id for t in range(19))
    assert CITYSCAPES_AVG_INSTANCE_SIZE == args.avgClassSize
