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

"""Several cameras' frames in one pass: each as it would be alone, each with its own gate."""
from dataclasses import replace

from depthgate_ros.data.synthetic import Camera, render_frame
from depthgate_ros.inference import Predictor
from depthgate_ros.model.checkpoint import load_checkpoint
import numpy as np
import pytest
import torch


@pytest.fixture(scope='module')
def predictor(tiny_checkpoint):
    model, info, _ = load_checkpoint(tiny_checkpoint)
    # a training camera, so that a camera unlike it changes depth and gate (camera_scale)
    return Predictor(model, replace(info, focal_px=115.0), device='cpu', size=(96, 128))


def _frame(seed, h, w):
    fr = render_frame(seed, Camera(width=w, height=h, fx=0.9 * w, fy=0.9 * w))
    return fr.rgb, fr.depth


def test_hybrid_gate_without_valid_depth_is_the_predicted_gate(tiny_checkpoint):
    # the fact a mixed batch rests on, on the network itself
    model, _, _ = load_checkpoint(tiny_checkpoint)
    model.eval()
    image = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        predicted = model(image, None, gate='predicted')
        hybrid = model(image, torch.full((2, 1, 64, 96), float('nan')), gate='hybrid')
    for a, b in zip(predicted, hybrid):
        assert torch.equal(a['seg'], b['seg']) and torch.equal(a['gate'], b['gate'])


def test_a_batch_gives_each_frame_what_it_would_get_alone(predictor):
    # three cameras of different sizes; the first sends depth, the second a focal length
    # unlike the training camera's, the third neither
    frames = [_frame(1, 480, 640), _frame(2, 360, 480), _frame(3, 240, 320)]
    rgbs = [f[0] for f in frames]
    depths = [frames[0][1], None, None]
    focals = [None, 700.0, None]
    batch = predictor.predict_batch(rgbs, depths, focals)
    assert [p.gate_source for p in batch] == ['hybrid', 'predicted', 'predicted']
    assert predictor.camera_scale(700.0, 480) != 1.0
    for p, rgb, depth, focal in zip(batch, rgbs, depths, focals):
        alone = predictor.predict(rgb, depth, focal_px=focal)
        assert p.labels.shape == rgb.shape[:2] and p.gate_source == alone.gate_source
        # the same arithmetic up to the order of float sums in a batched convolution
        assert (p.labels == alone.labels).mean() > 0.999
        np.testing.assert_allclose(p.depth, alone.depth, rtol=1e-3)
        np.testing.assert_allclose(p.confidence, alone.confidence, atol=1e-4)
        assert (p.gate == alone.gate).mean() > 0.999


def test_gates_that_cannot_share_a_pass_run_as_separate_batches(predictor, monkeypatch):
    # tried: the sensor gate asked for, one frame with depth and one without (which falls
    # back to predicted: a sensor pass cannot carry it)
    rgb, depth = _frame(4, 96, 128)
    monkeypatch.setattr(predictor, 'gate', 'sensor')
    calls = []
    run = predictor._predict_batch
    monkeypatch.setattr(predictor, '_predict_batch',
                        lambda *a: calls.append((len(a[0]), a[4])) or run(*a))
    out = predictor.predict_batch([rgb, rgb], [depth, None])
    assert [p.gate_source for p in out] == ['sensor', 'predicted']
    assert sorted(calls) == [(1, 'predicted'), (1, 'sensor')]


def test_bad_batches_are_refused_with_the_reason(tiny_checkpoint):
    # tried: mixed sizes with no inference size, a depth list of the wrong length
    own_size = Predictor.from_checkpoint(tiny_checkpoint, device='cpu')
    a, b = _frame(5, 96, 128)[0], _frame(6, 64, 96)[0]
    with pytest.raises(ValueError, match='need an inference size'):
        own_size.predict_batch([a, b])
    with pytest.raises(ValueError, match='2 images, 1 depth maps'):
        own_size.predict_batch([a, a], [None])
