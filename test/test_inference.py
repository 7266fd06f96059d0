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

"""Predictor: numpy in/out at the input's size, gate choice, TTA and blur semantics."""
import dataclasses
import logging
import math

import cv2
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.inference import image_input, normalize_image, Predictor, resolve_device
from depthgate_ros.model.checkpoint import ModelInfo, save_checkpoint
import numpy as np
import pytest
import torch

INFO = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)


@pytest.fixture
def predictor(make_model):
    def make(model=None, **opts):
        return Predictor(model or make_model(seed=7), INFO, device='cpu', **opts)
    return make


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_normalisation_per_channel_in_both_memory_formats():
    """
    (x / 255 - mean) / std per channel, in float64 by numpy, against both paths.

    Inputs tried: a camera frame as it arrives (channels last, 480 x 640, the row-pattern path)
    and a training batch (two NCHW images, odd width), with three different means and stds.
    """
    mean, std = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.3, 0.7])

    def reference(rgb):
        return (rgb / 255.0 - mean.double().numpy()) / std.double().numpy()   # (..., H, W, 3)
    rgb = _rgb(480, 640, seed=3)
    x = image_input(rgb, mean, std)
    assert x.shape == (1, 3, 480, 640) and x.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), reference(rgb), atol=2e-6)
    batch = np.stack([_rgb(31, 45, seed=4), _rgb(31, 45, seed=5)])
    x = normalize_image(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(), mean, std)
    assert x.is_contiguous()
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), reference(batch), atol=2e-6)


@pytest.mark.parametrize('h,w', [(479, 641), (37, 53), (64, 64)])
def test_outputs_have_the_input_size(predictor, h, w):
    p = predictor()
    out = p.predict(_rgb(h, w))
    assert out.labels.shape == out.depth.shape == out.confidence.shape == out.gate.shape == (h, w)
    assert out.labels.dtype == np.uint8 and out.labels.max() < 19
    assert out.depth.dtype == np.float32 and np.all(out.depth > 0)
    assert np.all((out.confidence > 1 / 19 - 1e-6) & (out.confidence <= 1))
    assert out.gate.dtype == np.uint8 and out.gate.max() < 5
    assert out.gate_source == 'predicted' and out.loops == 2


def test_matches_the_network_run_by_hand(predictor, make_model):
    model = make_model(seed=7).eval()
    p = predictor(model)
    rgb = _rgb(40, 72)
    out = p.predict(rgb, loops=1)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(INFO.mean).view(1, 3, 1, 1)) / torch.tensor(INFO.std).view(1, 3, 1, 1)
    with torch.no_grad():
        o = model(x, loops=1)[-1]
        low = model(x, loops=1, full_size=False)[-1]['seg']
    probs = o['seg'].softmax(1)[0]
    np.testing.assert_array_equal(out.labels, probs.argmax(0).numpy())
    # confidence: the top class's probability at the network's resolution, enlarged
    top = low.softmax(1).max(1, keepdim=True).values
    expected = torch.nn.functional.interpolate(top, size=(40, 72), mode='bilinear',
                                               align_corners=False)[0, 0]
    np.testing.assert_allclose(out.confidence, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.depth, o['log_depth'][0, 0].exp().numpy(), rtol=1e-5)


def test_full_resolution_work_only_for_what_is_asked(predictor, monkeypatch):
    """
    Only depth is upsampled whole; labels and the gate map come from label_upsampling.

    Class scores are never resized whole (confidence is one plane), and nothing is computed for
    an output that is not asked for. Input tried: a 96 x 160 image (the scores' 12 x 20 times
    8), all outputs vs outputs=() (labels and depth only) vs outputs=('gate',) and
    ('confidence',).
    """
    import depthgate_ros.inference as inference
    import torch.nn.functional as F
    p = predictor()
    rgb = _rgb(96, 160)
    full = p.predict(rgb)
    upsampled = []

    def spy(real):
        def resize(x, size=None, **kw):
            y = real(x, size=size, **kw)
            if tuple(y.shape[-2:]) == (96, 160):
                upsampled.append(y.shape[1])
            return y
        return resize
    # both ways of enlarging: interpolate and the matrix products for planes
    monkeypatch.setattr(F, 'interpolate', spy(F.interpolate))
    monkeypatch.setattr(inference, 'upsampled_planes', spy(inference.upsampled_planes))
    softmax = []
    real_softmax = torch.Tensor.softmax
    monkeypatch.setattr(torch.Tensor, 'softmax', lambda t, *a, **k: softmax.append(
        tuple(t.shape)) or real_softmax(t, *a, **k))
    bare = p.predict(rgb, outputs=())
    # log depth (1) once; no class scores, no depth logits, no gate, no softmax
    assert upsampled == [1]
    assert not [s for s in softmax if s[-2:] == (96, 160)]
    assert bare.confidence is None and bare.gate is None
    np.testing.assert_array_equal(bare.labels, full.labels)
    np.testing.assert_array_equal(bare.depth, full.depth)
    upsampled.clear()
    with_gate = p.predict(rgb, outputs=('gate',))
    assert upsampled == [1] and with_gate.confidence is None
    np.testing.assert_array_equal(with_gate.gate, full.gate)
    upsampled.clear(), softmax.clear()
    confident = p.predict(rgb, outputs=('confidence',))
    # one plane of confidence beside log depth; no softmax of the 19 classes at full size
    assert upsampled == [1, 1] and not [s for s in softmax if s[-2:] == (96, 160)]
    np.testing.assert_array_equal(confident.confidence, full.confidence)


def test_auto_gate_is_hybrid_with_sensor_depth_and_predicted_without(predictor):
    p = predictor()
    rgb = _rgb(48, 64)
    near = np.full((48, 64), 2.0, np.float32)       # every pixel in the nearest bin
    out = p.predict(rgb, near)
    assert out.gate_source == 'hybrid'
    assert np.all(out.gate == 4)                    # nearest -> largest dilation (16)
    # depth at another resolution is resampled nearest-neighbour, invalid stays invalid
    half = np.full((24, 32), 100.0, np.float32)
    half[:, :16] = np.nan
    out = p.predict(rgb, half)
    assert np.all(out.gate[:, 40:] == 0)            # far -> dilation 1
    assert p.predict(rgb).gate_source == 'predicted'
    assert p.predict(rgb, near, gate='average').gate_source == 'average'


def test_flip_tta_is_flip_equivariant(predictor):
    p = predictor(tta_flip=True)
    rgb = _rgb(40, 56)
    a = p.predict(rgb)
    b = p.predict(rgb[:, ::-1])
    np.testing.assert_allclose(a.confidence, b.confidence[:, ::-1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.depth, b.depth[:, ::-1], rtol=1e-4)


def test_scale_tta_keeps_metric_depth_and_sizes(predictor, make_model, monkeypatch):
    # A stub network that sees every view's sensor depth and answers 10 m everywhere: in a view
    # scaled by s things look s times closer, so its 10 m mean 10 s metres, and sensor depth
    # must reach it divided by s.
    model = make_model(seed=7).eval()
    seen = {}

    def stub(image, sensor, loops, gate, full_size=True):
        h, w = image.shape[-2:]
        seen[w] = sensor
        for _ in range(loops + 1):
            yield {'seg': torch.zeros(1, 19, h, w), 'gate': None,
                   'log_depth': torch.full((1, 1, h, w), math.log(10.0))}
    monkeypatch.setattr(model, 'iter_loops', stub)
    p = predictor(model, tta_scales=(0.5, 1.0, 1.5))
    out = p.predict(_rgb(48, 80), np.full((48, 80), 12.0, np.float32), gate='sensor')
    assert out.labels.shape == out.depth.shape == (48, 80)
    # log depth averaged over the views: 10 m x the geometric mean of the scales
    np.testing.assert_allclose(out.depth, 10.0 * (0.5 * 1.0 * 1.5) ** (1 / 3), rtol=1e-5)
    assert sorted(seen) == [40, 80, 120]
    for w, s in ((40, 0.5), (80, 1.0), (120, 1.5)):
        torch.testing.assert_close(seen[w], torch.full_like(seen[w], 12.0 / s))


def test_depth_blur_is_a_gaussian_on_the_output_depth(predictor):
    rgb = _rgb(64, 64)
    raw = predictor().predict(rgb).depth
    blurred = predictor(depth_blur_sigma=2.0).predict(rgb).depth
    # Independent implementation: OpenCV's Gaussian (kernel 2*ceil(3 sigma)+1, reflect-101
    # borders as torchvision pads).
    reference = cv2.GaussianBlur(raw, (13, 13), 2.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(blurred, reference, rtol=1e-4)
    assert np.abs(np.diff(blurred, axis=1)).max() < np.abs(np.diff(raw, axis=1)).max()


def test_inference_resolution(predictor, make_model):
    p = predictor(size=(32, 48))
    out = p.predict(_rgb(96, 144))
    assert out.labels.shape == (96, 144)


def test_bad_inputs_are_named(predictor):
    p = predictor()
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        p.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        p.predict(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match='empty'):
        p.predict(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match='depth must be'):
        p.predict(_rgb(16, 16), np.zeros((16, 16, 2), np.float32))
    with pytest.raises(ValueError, match='gate'):
        predictor(gate='stereo')
    with pytest.raises(ValueError, match='size'):
        predictor(size=(4, 4))


def test_device_resolution(caplog):
    with caplog.at_level(logging.WARNING):
        dev = resolve_device('auto')
    if not torch.cuda.is_available():
        assert dev.type == 'cpu' and 'no CUDA' in caplog.text
        with pytest.raises(ValueError, match='CUDA is not available'):
            resolve_device('cuda:0')
    assert resolve_device('cpu').type == 'cpu'
    with pytest.raises((ValueError, RuntimeError)):
        resolve_device('tpu')


def test_from_checkpoint(make_model, tmp_path):
    model = make_model(seed=2)
    path = save_checkpoint(tmp_path / 'm.pt', model, INFO)
    p = Predictor.from_checkpoint(path, device='cpu', loops=1)
    direct = Predictor(model, INFO, device='cpu', loops=1)
    rgb = _rgb(33, 47)
    np.testing.assert_array_equal(p.predict(rgb).labels, direct.predict(rgb).labels)
    assert p.info.class_names == CITYSCAPES_NAMES


def test_baseline_model_has_no_gate_map(make_model):
    model = make_model(gate_source='none', recurrent=False, loops=0)
    out = Predictor(model, INFO, device='cpu').predict(_rgb(32, 32))
    assert out.gate is None and out.gate_source == 'none' and out.loops == 0


def test_predict_loops_gives_every_loop_from_one_pass(predictor):
    p = predictor(loops=2)
    rgb = _rgb(40, 56)
    per_loop = p.predict_loops(rgb)
    assert [r.loops for r in per_loop] == [0, 1, 2]
    for loops in (0, 1, 2):
        alone = p.predict(rgb, loops=loops)
        np.testing.assert_array_equal(alone.labels, per_loop[loops].labels)
        np.testing.assert_allclose(alone.depth, per_loop[loops].depth, rtol=1e-6)


def test_latency_budget_runs_the_loops_that_fit(predictor, monkeypatch):
    # A fake clock: only a recurrent loop takes time (100 ms), so the decisions are exact.
    p = predictor(loops=2)
    clock = [0.0]
    monkeypatch.setattr('depthgate_ros.inference.time.perf_counter', lambda: clock[0])
    refine = p.model.refine.forward

    def slow_refine(*args, **kwargs):
        clock[0] += 0.1
        return refine(*args, **kwargs)
    monkeypatch.setattr(p.model.refine, 'forward', slow_refine)
    rgb = _rgb(40, 56)
    full = p.predict_loops(rgb)
    assert len(full) == 3 and p.loop_seconds is None        # no budget: nothing timed
    for budget_ms, expect in ((0, 0), (150, 1), (199, 1), (250, 2), (1000, 2)):
        clock[0] = 0.0
        out = p.predict_loops(rgb, budget_ms=budget_ms)
        assert [r.loops for r in out] == list(range(expect + 1)), budget_ms
        if expect:
            assert p.loop_seconds == pytest.approx(0.1)
        # the anytime outputs are the same as the full pass's, not approximations
        np.testing.assert_array_equal(out[-1].labels, full[expect].labels)
    assert p.predict(rgb, budget_ms=120, loops=0).loops == 0     # loops still caps it
    with pytest.raises(ValueError, match='single view'):
        predictor(loops=2, tta_flip=True).predict(rgb, budget_ms=100)


def test_hard_gate_prediction_is_one_hot_driven(predictor):
    rgb = _rgb(48, 64)
    soft = predictor(loops=1)
    hard = predictor(loops=1, hard_gate=True)
    assert hard.hard_gate and not soft.hard_gate
    a, b = soft.predict(rgb), hard.predict(rgb)
    assert a.labels.shape == b.labels.shape and b.gate is not None
    # with the soft gate switched to hard at run time, the two predictors agree exactly
    soft.hard_gate = True
    np.testing.assert_array_equal(soft.predict(rgb).labels, b.labels)
    # and the gate the branches get is one-hot: one branch per pixel, every loop
    with torch.inference_mode():          # as the Predictor runs it
        outs = hard.model(torch.randn(1, 3, 48, 64), loops=1, gate='predicted')
    for out in outs:
        assert set(out['gate'].unique().tolist()) == {0.0, 1.0}
        assert torch.equal(out['gate'].sum(1), torch.ones_like(out['gate'][:, 0]))


def test_camera_focal_length_keeps_sensor_and_predicted_depth_metric(make_model, monkeypatch):
    model = make_model(seed=7).eval()
    # trained on images with a 100 px focal length; this camera has 60 px at 72 px width
    p = Predictor(model, dataclasses.replace(INFO, focal_px=100.0), device='cpu')
    rgb, depth = _rgb(40, 72), np.full((40, 72), 12.0, np.float32)
    given = []
    iter_loops = model.iter_loops

    def spy(image, sensor, *args, **kwargs):
        given.append(sensor)
        return iter_loops(image, sensor, *args, **kwargs)
    monkeypatch.setattr(model, 'iter_loops', spy)
    p.predict(rgb, depth, gate='sensor')                       # focal unknown: as it is
    p.predict(rgb, depth, gate='sensor', focal_px=60.0)
    # things look 0.6 times as large: like 20 m away to a network that learned at 100 px
    assert torch.all(given[0] == 12.0) and torch.allclose(given[1], torch.tensor(20.0))
    same = p.predict(rgb, gate='predicted').depth
    np.testing.assert_allclose(p.predict(rgb, gate='predicted', focal_px=60.0).depth,
                               0.6 * same, rtol=1e-5)
    # inference at twice the width doubles the focal length the network sees
    big = Predictor(model, dataclasses.replace(INFO, focal_px=100.0), device='cpu',
                    size=(80, 144))
    assert big.camera_scale(60.0, 72) == pytest.approx(1.2)
    assert big.camera_scale(None, 72) == 1.0 and p.camera_scale(60.0, 72) == 0.6
