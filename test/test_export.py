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
depthgate-export.

ONNX and TorchScript files that compute what the PyTorch model does, and the Predictor running the
ONNX file through ONNX Runtime.
"""
import copy
import math
import re

from depthgate_ros.cli.export import main as export_main
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.export import export_onnx, export_torchscript, parity
from depthgate_ros.inference import Predictor
from depthgate_ros.model.checkpoint import CheckpointError, ModelInfo, save_checkpoint
from depthgate_ros.model.interface import decide_gate
from depthgate_ros.onnx_backend import OnnxModel
import numpy as np
import pytest
import torch

INFO = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)
TOL = 1e-4          # float32 through another runtime's kernels


@pytest.fixture(scope='module')
def model():
    from conftest import small_config
    from depthgate_ros.model import DepthGatedNet
    torch.manual_seed(3)
    m = DepthGatedNet(small_config(loops=2)).eval()
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)      # non-trivial statistics to fold
        bn.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope='module')
def onnx_file(model, tmp_path_factory):
    return export_onnx(model, INFO, tmp_path_factory.mktemp('onnx') / 'm.onnx',
                       gate='predicted', loops=2, size=(64, 96))


def test_onnx_matches_eager_at_another_size(model, onnx_file):
    net = OnnxModel(onnx_file)
    assert (net.fixed_gate, net.loops, net.cfg, net.info.class_names) == (
        'predicted', 2, model.cfg, INFO.class_names)
    diffs = parity(model, net.run_flat, gate='predicted', loops=2, size=(64, 96))
    assert set(diffs) == {f'{k}_{loop}' for k in ('seg', 'log_depth') for loop in range(3)}
    assert max(diffs.values()) < TOL, diffs


def test_predictor_runs_the_onnx_file_like_the_model(model, onnx_file):
    rgb = np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    eager = Predictor(model, INFO, device='cpu').predict_loops(rgb)
    exported = Predictor.from_checkpoint(onnx_file, device='cpu')
    assert decide_gate(exported.model, 'auto', have_depth=True) == 'predicted'  # the export's
    for a, b in zip(eager, exported.predict_loops(rgb)):
        assert np.mean(a.labels == b.labels) > 0.999
        np.testing.assert_allclose(b.depth, a.depth, rtol=TOL)
        np.testing.assert_array_equal(b.gate, a.gate)
    with pytest.raises(ValueError, match='fixed at export'):
        exported.hard_gate = True
    with pytest.raises(ValueError, match='exported with 2 loops'):
        exported.predict(rgb, loops=3)


@pytest.mark.parametrize('gate,sigma', [('sensor', 0.0), ('hybrid', 0.5)])
def test_depth_gated_onnx_takes_depth_with_holes(model, tmp_path, gate, sigma):
    model = copy.deepcopy(model)
    model.cfg = model.cfg.replace(sensor_sigma=sigma)       # soft bins: erf in the graph
    path = export_onnx(model, INFO, tmp_path / 's.onnx', gate=gate, loops=1, size=(64, 96))
    net = OnnxModel(path)
    assert net.inputs == ['image', 'depth']
    image = torch.randn(1, 3, 72, 120)
    depth = torch.rand(1, 1, 72, 120) * 50 + 1
    depth[..., :20, :] = math.nan                   # the sky: no sensor depth
    with torch.no_grad():
        ref = model(image, depth, loops=1, gate=gate, full_size=False)   # as exported
    got = dict(zip(net.outputs, net.run_flat(image, depth)))
    for loop in range(2):
        np.testing.assert_allclose(got[f'seg_{loop}'], ref[loop]['seg'].numpy(), atol=TOL)
        np.testing.assert_allclose(got[f'gate_{loop}'], ref[loop]['gate'].numpy(), atol=TOL)
    with pytest.raises(ValueError, match='needs a depth map'):
        net.run_flat(image)


def test_torchscript_matches_eager(model, tmp_path):
    path = export_torchscript(model, INFO, tmp_path / 'm.ts', gate='predicted', loops=2,
                              size=(64, 96))
    ts = torch.jit.load(str(path))

    def run(image, depth):
        with torch.no_grad():
            return [t.numpy() for t in ts(image)]
    diffs = parity(model, run, gate='predicted', loops=2, size=(64, 96))
    assert max(diffs.values()) < TOL, diffs


def test_bad_inputs_stop_cleanly(model, tmp_path, capsys):
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'not a model')
    with pytest.raises(CheckpointError, match='cannot load'):
        OnnxModel(bad)
    with pytest.raises(ValueError, match='opset'):
        export_onnx(model, INFO, tmp_path / 'x.onnx', opset=13)
    # a checkpoint that does not load: exit 2, a message, no output file
    ckpt = tmp_path / 'broken.pt'
    ckpt.write_bytes(b'garbage')
    out = tmp_path / 'out.onnx'
    assert export_main([str(ckpt), '--onnx', str(out)]) == 2
    assert 'depthgate-export' in capsys.readouterr().err and not out.exists()
    good = save_checkpoint(tmp_path / 'good.pt', model, INFO)
    with pytest.raises(SystemExit) as stop:                  # argparse: not a gate source
        export_main([str(good), '--onnx', str(out), '--gate', 'stereo'])
    assert stop.value.code == 2
    assert "invalid choice: 'stereo'" in capsys.readouterr().err and not out.exists()


def test_a_batch_of_two_matches_eager_image_by_image(model, onnx_file):
    from depthgate_ros.export import ExportWrapper, output_names
    net = OnnxModel(onnx_file)
    torch.manual_seed(5)
    batch = torch.randn(2, 3, 72, 104)                  # two different images, one call
    got = net.run_flat(batch, None)
    wrapper = ExportWrapper(model.eval(), 'predicted', 2).eval()
    for i in range(2):
        with torch.no_grad():
            ref = wrapper(batch[i:i + 1], None)        # each image alone, eager
        for name, g, r in zip(output_names(model, 2), got, ref):
            if not name.startswith('gate'):
                assert np.abs(np.asarray(g)[i:i + 1] - r.numpy()).max() < TOL, (name, i)


def test_the_cli_exports_a_hard_gate_and_checks_parity(model, tmp_path, capsys):
    good = save_checkpoint(tmp_path / 'good.pt', model, INFO)
    out = tmp_path / 'hard.onnx'
    assert export_main([str(good), '--onnx', str(out), '--hard-gate', '--loops', '1',
                        '--size', '64', '96', '--check']) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith('ONNX Runtime parity'))
    diffs = [float(v) for v in re.findall(r"': ([0-9.e+-]+)", line)]
    assert len(diffs) == 4 and max(diffs) < TOL, line      # seg and log depth, loops 0-1
    net = OnnxModel(out)
    assert (net.hard_gate, net.loops, net.fixed_gate) == (True, 1, 'predicted')


def test_a_hybrid_export_runs_frames_without_depth_on_its_predicted_gate(model, tmp_path):
    # a camera's depth drops out: the hybrid graph, given no valid depth pixel, gates as the
    # eager model's predicted gate does; a sensor-only graph says it needs depth
    rgb = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    eager = Predictor(model, INFO, device='cpu', loops=1).predict(rgb, gate='predicted')
    hybrid = Predictor.from_checkpoint(
        export_onnx(model, INFO, tmp_path / 'h.onnx', gate='hybrid', loops=1, size=(64, 96)),
        device='cpu')
    got = hybrid.predict(rgb)
    assert got.gate_source == 'predicted'
    assert np.mean(got.labels == eager.labels) > 0.999
    np.testing.assert_allclose(got.depth, eager.depth, rtol=TOL)
    sensor = Predictor.from_checkpoint(
        export_onnx(model, INFO, tmp_path / 's.onnx', gate='sensor', loops=1, size=(64, 96)),
        device='cpu')
    with pytest.raises(ValueError, match='needs a depth map'):
        sensor.predict(rgb)


def test_int8_graph_is_quantised_and_close_to_float(model, onnx_file, tmp_path, capsys):
    """
    Static int8 (QDQ) of the exported graph: quantised, runs in the Predictor, labels as fp32's.

    Input tried: the module's small gated model at 64 x 96, calibrated on 2 rendered frames.
    """
    import onnx
    from depthgate_ros.export import quantize_int8
    path = quantize_int8(onnx_file, tmp_path / 'm.int8.onnx', INFO, frames=2, size=(64, 96))
    graph = onnx.load(path)
    ops = {n.op_type for n in graph.graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    int8 = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 20                      # the convolutions' weights
    assert path.stat().st_size < 0.5 * onnx_file.stat().st_size
    assert not list(tmp_path.glob('.*'))        # no temporary file left behind
    fp32, q = Predictor.from_checkpoint(onnx_file), Predictor.from_checkpoint(path)
    assert (q.model.fixed_gate, q.loops, q.info.class_names) == ('predicted', 2,
                                                                 INFO.class_names)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    a, b = fp32.predict(rgb), q.predict(rgb)
    assert np.mean(a.labels == b.labels) > 0.9
    np.testing.assert_allclose(np.log(b.depth), np.log(a.depth), atol=0.1)
    # the CLI refuses --int8 without the ONNX graph it quantises
    with pytest.raises(SystemExit):
        export_main([str(tmp_path / 'x.pt'), '--torchscript', str(tmp_path / 'x.ts'),
                     '--int8', str(tmp_path / 'x.onnx')])
    assert '--int8 quantises the ONNX graph' in capsys.readouterr().err


def test_street_model_exports_and_quantises(tmp_path):
    """
    The bundled street model (ESPNetv2: PReLU, grouped and dilated depthwise convs) via ONNX.

    Input tried: the bundled model with its predicted gate exported at 96 x 128, its ONNX fp32
    graph against eager on a rendered frame, then int8 calibrated on 2 rendered frames.
    """
    from depthgate_ros.data.synthetic import Camera, render_frame
    from depthgate_ros.export import quantize_int8
    from depthgate_ros.model.checkpoint import load_checkpoint
    m, info, _ = load_checkpoint('street')
    path = export_onnx(m, info, tmp_path / 'street.onnx', gate='predicted', loops=1,
                       size=(96, 128))
    rgb = render_frame(7, Camera(width=128, height=96, fx=140.0, fy=140.0)).rgb
    eager = Predictor(copy.deepcopy(m), info, device='cpu', gate='predicted',
                      loops=1).predict(rgb)
    onnx_run = Predictor.from_checkpoint(path).predict(rgb)
    assert np.mean(onnx_run.labels == eager.labels) > 0.999
    np.testing.assert_allclose(onnx_run.depth, eager.depth, rtol=1e-3)
    q = Predictor.from_checkpoint(quantize_int8(path, tmp_path / 'street.int8.onnx', info,
                                                frames=2, size=(96, 128))).predict(rgb)
    assert np.mean(q.labels == eager.labels) > 0.8
