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

"""The one parameter check behind start-up and `ros2 param set` (no DDS needed)."""
import ast
from pathlib import Path
import re

from depthgate_ros.node.parameters import (check, FIELDS, ModelFacts, PARAMETERS,
                                           parameters_table, parameters_yaml, STATIC,
                                           TABLE_BEGIN, TABLE_END)
import pytest
import torch
import yaml

DEFAULTS = {name: default for name, (default, _) in PARAMETERS.items()}
MODEL = ModelFacts(frozenset({'road', 'car', 'traffic_light'}), recurrent=False,
                   gates=('auto', 'average', 'sensor', 'hybrid', 'predicted'))
BASELINE = ModelFacts(MODEL.classes, recurrent=False, gates=('auto', 'none'))


@pytest.mark.parametrize('changes, name, words', [
    ({'gate_source': 'banana'}, 'gate_source', "'banana' is not one of"),
    ({'input_reliability': 'sometimes'}, 'input_reliability', 'not one of'),
    ({'device': 'gpu'}, 'device', 'not one of auto, cpu, cuda[:N]'),
    ({'tta_scales': [1.0, 0.0]}, 'tta_scales', '> 0'),
    ({'inference_height': 4, 'inference_width': 8}, 'inference_height', 'at least 8'),
    ({'inference_height': 0, 'inference_width': 256}, 'inference_height', 'both 0'),
    ({'inference_height': 128, 'inference_width': 0}, 'inference_width', 'both 0'),
    ({'tta_scales': []}, 'tta_scales', '> 0'),
    ({'latency_budget_ms': 50.0, 'tta_flip': True}, 'latency_budget_ms', 'augmentation'),
    ({'latency_budget_ms': 50.0, 'tta_scales': [0.5, 1.0]}, 'latency_budget_ms',
     'augmentation'),
    ({'mask_classes': ['car', 'unicorn']}, 'mask_classes', "['unicorn']"),
    ({'loops': 2}, 'loops', 'no recurrent module'),
    ({'image_transport': 'theora'}, 'image_transport', "'theora' is not one of raw, compressed"),
    ({'depth_transport': 'compressed'}, 'depth_transport', 'not one of raw, compressedDepth'),
])
def test_each_rule_names_its_parameter(changes, name, words):
    problem = check({**DEFAULTS, **changes}, MODEL)
    assert problem is not None and problem.name == name and words in problem.reason, problem
    assert str(problem).startswith(f'parameter {name}: ')


def test_valid_values_pass():
    assert check(DEFAULTS, MODEL) is None
    # class names become topic names: "traffic light" is the class traffic_light
    assert check({**DEFAULTS, 'mask_classes': ['road', 'traffic light', ''],
                  'latency_budget_ms': 80.0, 'loops': 0, 'device': 'cpu',
                  'inference_height': 128, 'inference_width': 256}, MODEL) is None


def test_a_baseline_model_has_no_gate_to_choose():
    # the gate vocabulary is the model's own (Predictor.gates), not a list kept here
    assert check({**DEFAULTS, 'gate_source': 'auto'}, BASELINE) is None
    problem = check({**DEFAULTS, 'gate_source': 'sensor'}, BASELINE)
    assert problem.name == 'gate_source' and 'runs with auto, none' in problem.reason


def test_model_rules_wait_for_the_model():
    # before the model is loaded (start-up's first pass) classes cannot be judged
    assert check({**DEFAULTS, 'mask_classes': ['unicorn']}) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_requested_without_cuda():
    problem = check({**DEFAULTS, 'device': 'cuda:0'})
    assert problem.name == 'device' and 'CUDA is not available' in problem.reason


# -- one declaration: the parameters file, README's table and the launch file follow it -----

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_parameters_file_is_written_from_the_options():
    """config/perception.yaml: every parameter, its one default and its one description."""
    shipped = (ROOT / 'config' / 'perception.yaml').read_text()
    assert shipped == parameters_yaml(), \
        'config/perception.yaml is stale: run `python -m depthgate_ros.node.parameters`'
    values = yaml.safe_load(shipped)['/**']['ros__parameters']
    assert values == DEFAULTS                              # parsed back: the same values
    for name, f in FIELDS.items():                         # and each comment is its help
        assert ' '.join(f.metadata['help'].split()) in ' '.join(
            line.strip().removeprefix('# ') for line in shipped.splitlines()), name


def test_readme_parameter_table_is_written_from_the_options():
    readme = (ROOT / 'README.md').read_text()
    table = readme[readme.index(TABLE_BEGIN):readme.index(TABLE_END) + len(TABLE_END)]
    assert table == parameters_table(), \
        "README's parameter table is stale: run `python -m depthgate_ros.node.parameters`"
    rows = re.findall(r'^\| `(\w+)` \| `([^`]*)` \| (yes|no) \|', table, re.M)
    assert [(name, dynamic == 'no') for name, _, dynamic in rows] == \
        [(name, name in STATIC) for name in PARAMETERS]


def test_launch_arguments_that_set_parameters_are_parameters():
    source = (ROOT / 'launch' / 'perception.launch.py').read_text()
    overrides = ast.literal_eval(re.search(r'OVERRIDES = (\{.*?\n\})', source, re.S).group(1))
    assert overrides and set(overrides) <= set(PARAMETERS)
    # the module docstring lists every launch argument
    declared = set(re.findall(r"DeclareLaunchArgument\(\s*'(\w+)'", source))
    remaps = ast.literal_eval(re.search(r'REMAPS = (\{.*?\n\})', source, re.S).group(1))
    declared |= set(remaps) | {f'{topic}_pattern' for topic in remaps}     # and per camera
    declared |= set(overrides)
    doc = ast.get_docstring(ast.parse(source))
    listed = set(re.findall(r'^  (\w+)\s+\[', doc, re.M))
    assert listed == declared
