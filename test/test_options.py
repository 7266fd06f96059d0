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

"""One options model: the node's parameters and every tool's flags come from options.py."""
from contextlib import redirect_stdout
from dataclasses import fields
import io

from depthgate_ros.cli import bag_eval, demo, evaluate
from depthgate_ros.node.parameters import check, PARAMETERS, STATIC
from depthgate_ros.options import PairingOptions, PredictorOptions
import pytest
import torch

OPTIONS = [f for cls in (PredictorOptions, PairingOptions) for f in fields(cls)]


def test_every_option_is_a_node_parameter_with_its_default_and_dynamics():
    for f in OPTIONS:
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        assert PARAMETERS[f.name][0] == default, f.name
        assert (f.name in STATIC) != f.metadata['dynamic'], f.name


def _help(main) -> str:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        main(['--help'])
    return out.getvalue()


@pytest.mark.parametrize('tool, classes', [
    (evaluate.main, (PredictorOptions,)), (demo.main, (PredictorOptions,)),
    (bag_eval.main, (PredictorOptions, PairingOptions))])
def test_every_tool_offers_the_options_under_the_same_names(tool, classes):
    text = _help(tool)
    for cls in classes:
        for f in fields(cls):
            assert '--' + f.name.replace('_', '-') in text, f.name


@pytest.mark.parametrize('values, name, words', [
    ({'device': 'gpu'}, 'device', 'not one of auto, cpu, cuda[:N]'),
    ({'gate_source': 'banana'}, 'gate_source', "'banana' is not one of auto"),
    ({'tta_scales': (1.0, 0.0)}, 'tta_scales', '> 0'),
    ({'inference_height': 256}, 'inference_width', 'both 0'),
    ({'loops': 9}, 'loops', 'outside [-1, 8]'),
    ({'depth_blur_sigma': -1.0}, 'depth_blur_sigma', 'outside'),
])
def test_one_check_for_the_node_and_the_tools(values, name, words):
    found = PredictorOptions(**values).problem()
    assert found[0] == name and words in found[1], found
    # the node refuses the same value for the same reason
    defaults = {n: d for n, (d, _) in PARAMETERS.items()}
    problem = check({**defaults, **{k: list(v) if isinstance(v, tuple) else v
                                    for k, v in values.items()}})
    assert problem.name == name and words in problem.reason


@pytest.mark.parametrize('tool, args', [
    (evaluate.main, ['--checkpoint', 'x.pt', '--tta-scales', '1', '0']),
    (bag_eval.main, ['no_such_bag', '--tta-scales', '1', '0']),
    (demo.main, ['--tta-scales', '1', '0']),
])
def test_tools_refuse_a_bad_option_by_name_before_any_work(tool, args, capsys):
    with pytest.raises(SystemExit) as stop:
        tool(args)          # neither the checkpoint nor the bag exists: not even looked at
    assert stop.value.code == 2
    assert '--tta-scales: every scale must be > 0' in capsys.readouterr().err


def test_pairing_options_are_checked_too():
    assert PairingOptions(sync_slop=2.0).problem()[0] == 'sync_slop'
    assert PairingOptions().problem() is None


def test_predictor_kwargs_build_the_predictor(tiny_checkpoint):
    p = PredictorOptions(device='cpu', inference_height=64, inference_width=96,
                         tta_scales=(0.5, 1.0), depth_blur_sigma=1.5).load(tiny_checkpoint)
    assert (p.size, p.tta_scales, p.depth_blur_sigma, p.device) == (
        (64, 96), (0.5, 1.0), 1.5, torch.device('cpu'))
    assert p.loops == p.cfg.loops                       # -1: the model's own
    assert PredictorOptions(device='cpu', loops=0).load(tiny_checkpoint).loops == 0
    with pytest.raises(ValueError, match='tta_scales'):
        PredictorOptions(tta_scales=()).load(tiny_checkpoint)
