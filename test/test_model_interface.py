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

"""The three kinds of model the Predictor runs hold to one interface; the gate is decided once."""
import inspect
from types import SimpleNamespace

from conftest import small_config
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.export import export_onnx
from depthgate_ros.inference import Predictor
from depthgate_ros.model import DepthGatedNet, ModelConfig
from depthgate_ros.model.checkpoint import ModelInfo
from depthgate_ros.model.interface import (decide_gate, OUTPUT_KEYS, require_gate,
                                           SegmentationModel)
from depthgate_ros.model.network import build_model
from depthgate_ros.onnx_backend import OnnxModel
import numpy as np
import pytest
import torch

INFO = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    torch.manual_seed(0)
    gated = DepthGatedNet(small_config(loops=1)).eval()
    peer = build_model(ModelConfig(architecture='lraspp_mobilenet_v3_large',
                                   gate_source='none', recurrent=False, loops=0)).eval()
    hybrid = export_onnx(gated, INFO, tmp_path_factory.mktemp('onnx') / 'hybrid.onnx',
                         gate='hybrid', loops=1, size=(32, 48))
    return {'DepthGatedNet': gated, 'PeerNet': peer, 'OnnxModel': OnnxModel(hybrid)}


@pytest.mark.parametrize('kind', ['DepthGatedNet', 'PeerNet', 'OnnxModel'])
def test_every_model_kind_satisfies_the_protocol(models, kind):
    model = models[kind]
    assert type(model).__name__ == kind
    assert isinstance(model, SegmentationModel)
    # iter_loops takes the protocol's arguments under the protocol's names, in its order
    wanted = list(inspect.signature(SegmentationModel.iter_loops).parameters)
    assert list(inspect.signature(model.iter_loops).parameters) == wanted[1:]
    assert isinstance(model.gates, tuple) and model.gates
    assert model.fixed_gate is None or model.gates == (model.fixed_gate,)
    # each loop yields every output, under the same keys
    gate = decide_gate(model, 'auto', have_depth=False)
    out = list(model.iter_loops(torch.rand(1, 3, 32, 48), None, model.loops, gate,
                                full_size=False))
    assert len(out) == model.loops + 1
    for loop in out:
        assert set(OUTPUT_KEYS) <= set(loop)
        assert loop['seg'].shape[:2] == (1, 19)


def test_a_protocol_member_missing_fails_the_check(models):
    class NoGates:                              # everything but `gates`
        cfg, hard_gate, fixed_gate, loops = models['PeerNet'].cfg, False, None, 0

        def iter_loops(self, image, depth=None, max_loops=None, gate=None, full_size=True):
            yield {}
    assert not isinstance(NoGates(), SegmentationModel)


def _model(trained: str, fixed: str | None = None):
    gates = (fixed,) if fixed else ('none',) if trained == 'none' else (
        'average', 'sensor', 'hybrid', 'predicted')
    return SimpleNamespace(cfg=SimpleNamespace(gate_source=trained, architecture='x'),
                           fixed_gate=fixed, gates=gates)


# (trained gate, export's fixed gate, requested, frame has depth) -> decided gate, worked out
# from the rules: auto = hybrid for a depth-driven model (else its own gate; an export's gate
# always), a depth gate without depth = predicted unless the export is sensor-only
CASES = [
    ('predicted', None, 'auto', True, 'hybrid'),
    ('predicted', None, 'auto', False, 'predicted'),
    ('predicted', None, None, True, 'hybrid'),
    ('sensor', None, 'auto', False, 'predicted'),
    ('predicted', None, 'sensor', False, 'predicted'),
    ('predicted', None, 'average', True, 'average'),
    ('average', None, 'auto', True, 'average'),
    ('none', None, 'auto', True, 'none'),
    ('predicted', 'hybrid', 'auto', False, 'predicted'),
    ('predicted', 'predicted', 'auto', True, 'predicted'),
    ('sensor', 'sensor', 'auto', False, 'sensor'),
]


@pytest.mark.parametrize('trained,fixed,requested,have_depth,expected', CASES)
def test_the_gate_is_decided_by_the_rules(trained, fixed, requested, have_depth, expected):
    assert decide_gate(_model(trained, fixed), requested, have_depth) == expected


def test_a_model_refuses_a_gate_it_cannot_run(models):
    with pytest.raises(ValueError, match='needs a gated model'):
        require_gate(models['PeerNet'], 'predicted', have_depth=False)
    with pytest.raises(ValueError, match='needs a depth map'):
        require_gate(models['DepthGatedNet'], 'sensor', have_depth=False)
    assert require_gate(models['DepthGatedNet'], 'hybrid', have_depth=True) == 'hybrid'


def test_the_predictor_decides_once_and_passes_the_gate_down(models, monkeypatch):
    """
    The gate the model runs is the one decide_gate returned, and it is asked once per frame.

    Input tried: the gated model through a Predictor, auto with and without depth.
    """
    import depthgate_ros.inference as inference
    decided, ran = [], []
    real_decide = inference.decide_gate

    def spy_decide(*args, **kwargs):
        decided.append(real_decide(*args, **kwargs))
        return decided[-1]
    model = models['DepthGatedNet']
    real_iter = model.iter_loops

    def spy_iter(image, depth=None, max_loops=None, gate=None, full_size=True):
        ran.append(gate)
        return real_iter(image, depth, max_loops, gate, full_size)
    monkeypatch.setattr(inference, 'decide_gate', spy_decide)
    monkeypatch.setattr(model, 'iter_loops', spy_iter)
    predictor = Predictor(model, INFO, device='cpu')
    rgb = np.zeros((32, 48, 3), np.uint8)
    depth = np.full((32, 48), 8.0, np.float32)
    for d, gate in ((depth, 'hybrid'), (None, 'predicted')):
        decided.clear(), ran.clear()
        pred = predictor.predict(rgb, d)
        assert decided == [gate] and ran == [gate] and pred.gate_source == gate
