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
The option `compile`: the network's parts compiled by torch.compile (inductor), for real.

The rest of the suite runs eager (conftest.py sets TORCH_COMPILE_DISABLE); these tests turn
compiling back on for themselves. Each compiles a small network once (seconds to tens of
seconds on 2 cores), so they share one model per module.
"""
import copy
import logging

from conftest import small_config, stamped
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.inference import Predictor
from depthgate_ros.model import DepthGatedNet
from depthgate_ros.model.checkpoint import ModelInfo
from depthgate_ros.model.folding import fold_batchnorm
from depthgate_ros.node.image_codec import array_to_msg
from depthgate_ros.options import PredictorOptions
from depthgate_ros.tools.dds import ros_environment
from depthgate_ros.tools.node_process import NodeProcess
from depthgate_ros.tools.player import Player
import numpy as np
import pytest
from sensor_msgs.msg import Image
import torch
import torch._dynamo.utils
import torch._inductor.config

INFO = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)
KWARGS = {**PredictorOptions(device='cpu').predictor_kwargs(), 'loops': 1}


@pytest.fixture
def compiling():
    """Undo the suite's TORCH_COMPILE_DISABLE for one test; forget compiled code after it."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(disable=False):
        yield
    torch._dynamo.reset()


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    net = DepthGatedNet(small_config(depth_edges=(6.0, 12.0, 24.0, 48.0), recurrent=True))
    # running statistics far from the identity, so that folding and compiling have work to do
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return fold_batchnorm(net.eval())


def _frame(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            rng.uniform(2.0, 60.0, (h, w)).astype(np.float32))


def test_compiled_predictor_gives_the_eager_outputs(model, compiling, caplog):
    """A 64x96 frame, without and with sensor depth: each gate compiles once, outputs as eager."""
    eager = Predictor(copy.deepcopy(model), INFO, **{**KWARGS, 'compile': False})
    compiled = Predictor(copy.deepcopy(model), INFO, **KWARGS)
    rgb, depth = _frame()
    frames_before = torch._dynamo.utils.counters['frames']['ok']
    with caplog.at_level(logging.INFO, logger='depthgate_ros.inference'):
        for d in (None, depth, None, depth):
            want, got = eager.predict(rgb, d), compiled.predict(rgb, d)
            assert got.gate_source == want.gate_source
            assert (got.labels == want.labels).mean() > 0.999
            np.testing.assert_allclose(got.depth, want.depth, rtol=1e-4, atol=1e-5)
    # dynamo really turned frames into graphs; one compilation per gate, none per frame
    assert torch._dynamo.utils.counters['frames']['ok'] > frames_before
    assert compiled.compiled == {((1, 3, 64, 96), 'predicted', False),
                                 ((1, 3, 64, 96), 'hybrid', False)}
    assert sum('compiled in' in r.getMessage() for r in caplog.records) == 2


def test_a_compilation_that_fails_leaves_the_network_eager(model, compiling, caplog):
    """Inductor given a C++ compiler that does not exist: a warning, then eager outputs."""
    eager = Predictor(copy.deepcopy(model), INFO, **{**KWARGS, 'compile': False})
    compiled = Predictor(copy.deepcopy(model), INFO, **KWARGS)
    rgb, _ = _frame(48, 80, seed=1)
    # nothing from an earlier compilation may stand in for the failed one
    with torch._inductor.config.patch({'cpp.cxx': ('/nonexistent/g++',),
                                       'fx_graph_cache': False}), \
            caplog.at_level(logging.WARNING, logger='depthgate_ros.inference'):
        got = compiled.predict(rgb)
    assert any('torch.compile failed' in r.getMessage() for r in caplog.records)
    assert compiled.compiled is None
    for _ in range(2):          # and stays eager, without trying again
        np.testing.assert_array_equal(got.labels, eager.predict(rgb).labels)
        got = compiled.predict(rgb)
    assert sum('torch.compile failed' in r.getMessage() for r in caplog.records) == 1


def test_compile_off_and_onnx_models_run_as_they_are(model, compiling):
    """`compile: false` keeps the model's own modules; a model without parts is left alone."""
    off = Predictor(copy.deepcopy(model), INFO, **{**KWARGS, 'compile': False})
    assert off.compiled is None
    assert all(getattr(m, '_compiled_call_impl', None) is None for m in off.model.modules())


def test_a_warm_up_without_compiling_compiles_nothing(model, compiling):
    """A node at its cameras' own size warms up eager: no graph, nothing marked compiled."""
    on = Predictor(copy.deepcopy(model), INFO, **KWARGS)
    frames_before = torch._dynamo.utils.counters['frames']['ok']
    on.warm_up(batch=3, compile=False)
    assert on.compiled == set()
    assert torch._dynamo.utils.counters['frames']['ok'] == frames_before


def test_the_node_compiles_in_configure_at_its_inference_size(tiny_checkpoint):
    """
    The node in its own process, `compile` at its default, inference size 64x96, one camera.

    Both gates `auto` picks compile in configure (the node says so in its log), and a frame
    (120x160, no depth) then compiles nothing more.
    """
    env = ros_environment(profile=False)
    env.pop('TORCH_COMPILE_DISABLE')
    node = NodeProcess({'model_path': str(tiny_checkpoint), 'device': 'cpu',
                        'inference_height': 64, 'inference_width': 96}, env).start()
    h = Player()
    try:
        h.collect(Image, '/perception_node/labels')
        image = h.publisher(Image, 'image')
        assert h.wait_for(lambda: h.peer.count_publishers('/perception_node/labels') > 0,
                          timeout=240), node.log
        compiling = [line for line in node.log.splitlines()
                     if 'compiling the network for input 1x3x64x96' in line]
        assert len(compiling) == 2 and 'gate hybrid' in compiling[0] \
            and 'gate predicted' in compiling[1], node.log
        h.wait_for_subscribers(image)
        rgb = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        assert h.wait_for(lambda: image.publish(array_to_msg(rgb, 'rgb8', stamped(5))) or
                          h.messages('/perception_node/labels'), timeout=60), node.log
        _, labels = h.messages('/perception_node/labels')[0]
        assert (labels.height, labels.width) == (120, 160)
        assert node.log.count('compiling the network') == 2, node.log
        assert 'torch.compile failed' not in node.log
    finally:
        h.close()
        node.stop()


def test_a_frame_after_the_warm_up_compiles_nothing(model, compiling):
    """
    Inference size 64x96, warmed up; then camera frames of 64x96, not resized, and 120x160.

    A camera frame is a view of its message's pixels, with other strides than a resized one;
    the network must not compile again for that.
    """
    p = Predictor(copy.deepcopy(model), INFO, **{**KWARGS, 'size': (64, 96)})
    p.warm_up(batch=1)
    frames_before = torch._dynamo.utils.counters['frames']['ok']
    for h, w in ((64, 96), (120, 160)):
        rgb, depth = _frame(h, w, seed=3)
        assert p.predict(rgb, depth).labels.shape == (h, w)
        assert p.predict(rgb).labels.shape == (h, w)
    assert torch._dynamo.utils.counters['frames']['ok'] == frames_before
