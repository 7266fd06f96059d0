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

"""The models shipped inside the package: present, small, loadable, and actually trained."""
from depthgate_ros.evaluation import evaluate_dataset
from depthgate_ros.inference import Predictor
from depthgate_ros.model.checkpoint import load_checkpoint
from depthgate_ros.training.datasets import SYNTHETIC_VAL_FIRST_SEED, SyntheticStreetDataset
from depthgate_ros.weights import bundled_checkpoint


def test_bundled_resnet18_model_is_shipped_and_small():
    path = bundled_checkpoint('synthetic_resnet18')
    assert path is not None, 'depthgate_ros/weights/synthetic_resnet18.pt is missing'
    assert path.stat().st_size <= 30e6                     # the limit
    model, info, _ = load_checkpoint(path)
    cfg = info.provenance['config']
    assert cfg['data']['dataset'] == 'synthetic' and len(info.class_names) == 19
    assert model.cfg.recurrent and model.cfg.gate_source == 'predicted'
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4
               for p in model.parameters())                 # float16 on disk, float32 loaded


def test_bundled_resnet18_model_segments_held_out_frames():
    # Held-out synthetic seeds at the training size. A random network scores mIoU ~0.02;
    # docs/results.md reports this model on 100 such frames (loop 2: see there).
    path = bundled_checkpoint('synthetic_resnet18')
    model, info, _ = load_checkpoint(path)
    size = tuple(info.provenance['config']['data']['image_size'])
    data = SyntheticStreetDataset(6, SYNTHETIC_VAL_FIRST_SEED + 500, size)
    r = evaluate_dataset(Predictor(model, info, device='cpu'), data, max_depth=80.0)
    assert r['final']['miou'] > 0.40 and r['final']['pixel_accuracy'] > 0.90
    assert r['final']['depth']['delta1'] > 0.40
    assert r['loop0']['iou']['road'] > 0.9 and r['loop0']['iou']['car'] > 0.6


def test_bundled_fast_model_is_shipped_small_and_segments_camera_frames():
    # The fast model at the camera size it was trained for (480 x 640), on held-out seeds;
    # docs/results.md reports it on 100 such frames. Its loop 0 labels no thin class, so the
    # thresholds are for the refined labels.
    path = bundled_checkpoint('synthetic_fast')
    assert path is not None, 'depthgate_ros/weights/synthetic_fast.pt is missing'
    assert path.stat().st_size <= 15e6                     # the limit
    model, info, _ = load_checkpoint(path)
    assert model.cfg.backbone == 'mobilenet_v3_large' and model.cfg.output_stride == 32
    data = SyntheticStreetDataset(4, SYNTHETIC_VAL_FIRST_SEED + 500, (480, 640))
    r = evaluate_dataset(Predictor(model, info, device='cpu'), data, max_depth=80.0)
    assert r['final']['miou'] > 0.45 and r['final']['pixel_accuracy'] > 0.90
    assert r['final']['depth']['delta1'] > 0.5
    assert r['final']['iou']['road'] > 0.9 and r['final']['iou']['car'] > 0.8


def test_bundled_street_model_is_the_default_and_keeps_depth():
    # The real-image model (docs/results.md "Real images"; test_real_images.py scores it on
    # real CamVid frames where they are at hand). Here: what it promises besides labels, on
    # held-out synthetic seeds at CamVid's size: depth to gate on, and both gates.
    path = bundled_checkpoint()
    assert path == bundled_checkpoint('street') and path.stat().st_size <= 5e6
    model, info, _ = load_checkpoint(path)
    assert info.provenance['dataset'] == 'camvid' and len(info.class_names) == 19
    assert model.cfg.backbone == 'espnetv2' and model.cfg.loops == 1
    assert {'hybrid', 'predicted'} <= set(model.gates)
    data = SyntheticStreetDataset(4, SYNTHETIC_VAL_FIRST_SEED + 500, (360, 480))
    r = evaluate_dataset(Predictor(model, info, device='cpu'), data, max_depth=80.0)
    assert r['final']['depth']['delta1'] > 0.55 and r['final']['iou']['road'] > 0.8
