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

"""The per-frame work (frames.FramePipeline) on real tensors, without DDS or ROS messages."""
import subprocess
import sys

from depthgate_ros.data.labels import CITYSCAPES_COLORS
from depthgate_ros.frames import (Frame, FramePipeline, FrameSettings, IMAGE_OUTPUTS,
                                  label_encoding)
from depthgate_ros.inference import Predictor
import numpy as np
import pytest


@pytest.fixture(scope='module')
def predictor(tiny_checkpoint):
    return Predictor.from_checkpoint(tiny_checkpoint, device='cpu')


class Decoder:
    """Stands in for ros/image_codec.decode_partner: items are ('metres', value) pairs."""

    def __init__(self):
        self.calls = []

    def __call__(self, item, unit):
        self.calls.append((item, unit))
        kind, value = item
        if kind == 'corrupt':
            raise ValueError('data has 3 bytes, a 64x48 16UC1 image needs 6144')
        return np.full((48, 64), value, np.float32)


def _rgb(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_sensor_depth_reaches_the_gate_and_is_decoded_only_when_read(predictor):
    decode = Decoder()
    pipe = FramePipeline(predictor, decode)
    # The tiny model's bin edges are 6, 12, 24, 48 m, and the nearest bin gates the largest
    # dilation (branch 4, paper section 4): 1 m -> branch 4, 100 m -> branch 0.
    near = pipe.run(_rgb(), FrameSettings(gate='sensor'), partner=('metres', 1.0))
    far = pipe.run(_rgb(), FrameSettings(gate='sensor'), partner=('metres', 100.0))
    assert (near.prediction.gate_source, far.prediction.gate_source) == ('sensor', 'sensor')
    assert set(np.unique(near.prediction.gate)) == {4}
    assert set(np.unique(far.prediction.gate)) == {0}
    np.testing.assert_array_equal(near.sensor_depth, 1.0)
    # auto with depth: hybrid; the 16UC1 unit reaches the decoder
    auto = pipe.run(_rgb(), FrameSettings(depth_unit_scale=0.0001), partner=('metres', 1.0))
    assert auto.prediction.gate_source == 'hybrid' and decode.calls[-1][1] == 0.0001
    # a gate that reads no depth is not worth pairing; given depth anyway, it ignores it
    assert not pipe.wants_depth('predicted') and pipe.wants_depth('auto')
    mono = pipe.run(_rgb(), FrameSettings(gate='predicted'), partner=('metres', 1.0))
    assert mono.prediction.gate_source == 'predicted'


def test_corrupt_depth_is_reported_and_the_frame_runs_monocular(predictor):
    pipe = FramePipeline(predictor, Decoder())
    frame = pipe.run(_rgb(), FrameSettings(), partner=('corrupt', None))
    assert frame.depth_error.startswith('data has 3 bytes')
    assert frame.sensor_depth is None and frame.prediction.gate_source == 'predicted'
    ok = pipe.run(_rgb(), FrameSettings(), partner=None)
    assert ok.depth_error is None
    np.testing.assert_array_equal(frame.prediction.labels, ok.prediction.labels)


def test_every_loop_gives_one_prediction_per_loop(predictor):
    frame = FramePipeline(predictor, Decoder()).run(_rgb(), FrameSettings(loops=2),
                                                    every_loop=True)
    assert [p.loops for p in frame.predictions] == [0, 1, 2]
    assert frame.prediction is frame.predictions[-1]


def test_images_encode_labels_colours_and_masks(predictor):
    pipe = FramePipeline(predictor, Decoder())
    settings = FrameSettings(mask_classes=('car', 'traffic_light'))
    frame = pipe.run(_rgb(), settings)
    labels = frame.prediction.labels
    # make sure both masks have pixels of their class
    labels[:4], labels[4:8] = 13, 6                 # Cityscapes train ids: car 13, light 6
    out = pipe.images(frame, settings)
    assert set(out) == set(IMAGE_OUTPUTS) | {'masks/car', 'masks/traffic_light'}
    assert out['labels'][1] == 'mono8' and out['labels'][0] is labels
    np.testing.assert_array_equal(out['labels_color'][0],
                                  np.array(CITYSCAPES_COLORS, np.uint8)[labels])
    for name, cls in (('car', 13), ('traffic_light', 6)):
        mask, encoding = out[f'masks/{name}']
        assert encoding == 'mono8'
        np.testing.assert_array_equal(mask, np.where(labels == cls, 255, 0))
    assert {k: v[1] for k, v in out.items() if k in ('depth', 'confidence', 'gate')} == {
        'depth': '32FC1', 'confidence': '32FC1', 'gate': 'mono8'}
    only = pipe.images(frame, FrameSettings(outputs=frozenset({'depth'})))
    assert list(only) == ['depth']


def test_label_encoding_past_255_classes():
    assert label_encoding(np.zeros((2, 2), np.uint8)) == 'mono8'
    assert label_encoding(np.full((2, 2), 300, np.uint16)) == 'mono16'


def test_stamps_that_break_pairing(predictor):
    pipe = FramePipeline(predictor, Decoder(), sync_slop=0.01)
    assert pipe.check_stamp(10**9) is None
    assert 'zero' in pipe.check_stamp(0)
    pipe.add_depth(2 * 10**9, ('metres', 3.0), 0)
    assert pipe.check_stamp(2 * 10**9) is None and pipe.partner(2 * 10**9) is not None
    assert pipe.partner(0) is None                           # a zero stamp never pairs
    assert 'backwards' in pipe.check_stamp(10**9)
    assert pipe.partner(2 * 10**9) is None                   # the bag restarted: forgotten


def test_fused_depth_prefers_the_sensor_where_it_has_depth(predictor):
    pred = FramePipeline(predictor, Decoder()).run(_rgb(), FrameSettings()).prediction
    sensor = np.full(pred.depth.shape, np.nan, np.float32)
    sensor[:, :10] = 2.5
    fused = FramePipeline.fused_depth(Frame([pred], _rgb(), sensor))
    np.testing.assert_array_equal(fused[:, :10], 2.5)
    np.testing.assert_array_equal(fused[:, 10:], pred.depth[:, 10:])
    assert FramePipeline.fused_depth(Frame([pred], _rgb(), None)) is pred.depth


def test_the_pipeline_imports_nothing_from_ros():
    code = ('import sys, depthgate_ros.frames; '
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'sensor_msgs', 'std_msgs', 'stereo_msgs', 'rosbags')]; print(bad)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == '[]'


def test_a_disabled_output_is_not_computed(predictor, monkeypatch):
    import depthgate_ros.frames as frames_module
    calls = []
    real = frames_module.colorize_labels
    monkeypatch.setattr(frames_module, 'colorize_labels',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    pipe = FramePipeline(predictor, Decoder())
    frame = pipe.run(_rgb(), FrameSettings())
    pipe.images(frame, FrameSettings(outputs=frozenset({'labels', 'depth'}),
                                     mask_classes=()))
    assert calls == []                            # labels_color off: never colourised
    pipe.images(frame, FrameSettings())
    assert calls == [1]


def test_past_255_classes_labels_are_mono16(tmp_path):
    from depthgate_ros.model import DepthGatedNet, ModelConfig
    from depthgate_ros.model.checkpoint import ModelInfo, save_checkpoint
    import torch
    torch.manual_seed(0)
    n = 300
    model = DepthGatedNet(ModelConfig(channels=16, depth_channels=(8, 8), num_classes=n))
    # the classifier's bias alone decides: class 299 everywhere, a value mono8 cannot hold
    for head in (model.head, model.refine):
        classifier = head.classifier[-1]
        torch.nn.init.zeros_(classifier.weight)
        torch.nn.init.constant_(classifier.bias, -10.0)
        classifier.bias.data[n - 1] = 10.0
    path = save_checkpoint(tmp_path / 'wide.pt', model, ModelInfo(
        [f'class {k}' for k in range(n)], [(k % 256, 0, 0) for k in range(n)]))
    pipe = FramePipeline(Predictor.from_checkpoint(path, device='cpu'), Decoder())
    frame = pipe.run(_rgb(), FrameSettings(mask_classes=('class_299',)))
    out = pipe.images(frame, FrameSettings(mask_classes=('class_299',)))
    labels, encoding = out['labels']
    assert encoding == 'mono16' and labels.dtype == np.uint16
    assert set(np.unique(labels)) == {299}
    assert set(np.unique(out['masks/class_299'][0])) == {255}    # a class name with a space


def test_labels_color_alpha_blends_the_image_in(predictor):
    pipe = FramePipeline(predictor, Decoder())
    rgb = _rgb(3)
    frame = pipe.run(rgb, FrameSettings())
    colour = np.array(CITYSCAPES_COLORS, np.uint8)[frame.prediction.labels]
    for alpha in (0.0, 0.25, 1.0):
        got = pipe.images(frame, FrameSettings(labels_color_alpha=alpha))['labels_color'][0]
        want = alpha * rgb.astype(float) + (1 - alpha) * colour      # by hand, per pixel
        assert np.abs(got.astype(float) - want).max() <= 0.5 + 1e-9, alpha


def test_the_inference_size_is_the_one_the_network_sees(tiny_checkpoint):
    from depthgate_ros.options import PredictorOptions
    p = PredictorOptions(device='cpu', inference_height=32, inference_width=48).load(
        tiny_checkpoint)
    seen = []
    real = p.model.iter_loops

    def spy(image, *args, **kwargs):
        seen.append(tuple(image.shape[-2:]))
        return real(image, *args, **kwargs)
    p.model.iter_loops = spy
    out = FramePipeline(p, Decoder()).run(_rgb(), FrameSettings()).prediction
    assert seen == [(32, 48)] and out.labels.shape == (48, 64)   # outputs at the input's size
