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
Distillation from a real-image teacher.

Its loss, its targets through augmentation, its cache, and a training run that follows the
teacher where the labels say nothing.
"""
import csv
import math

from conftest import camvid_tree
import cv2
from depthgate_ros.cli.train import main as train_main
from depthgate_ros.data.labels import CITYSCAPES_NAMES
from depthgate_ros.data.transforms import PairedAugment
from depthgate_ros.inference import Predictor
from depthgate_ros.model.checkpoint import load_checkpoint
from depthgate_ros.model.espnetv2 import ESPNetv2Segmentation
from depthgate_ros.model.losses import distill_loss
from depthgate_ros.training.config import ConfigError, from_dict
from depthgate_ros.training.teacher import SoftTargets, Teacher, TeacherError
import numpy as np
import pytest
import torch
import yaml

CAR = CITYSCAPES_NAMES.index('car')


def test_distill_loss_is_the_cross_entropy_to_the_teacher_where_it_has_targets():
    # pixel 0: student (1/4, 3/4) against teacher (1/2, 1/2); pixel 1: no target (all zero)
    logits = torch.tensor([[0.0, 0.0], [math.log(3), 5.0]]).view(1, 2, 1, 2)
    teacher = torch.tensor([[0.5, 0.0], [0.5, 0.0]]).view(1, 2, 1, 2)
    want = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert float(distill_loss(logits, teacher)) == pytest.approx(want, rel=1e-6)
    # at the teacher's own distribution the gradient vanishes (it is the minimum)
    logits = torch.log(torch.tensor([0.2, 0.3, 0.5])).view(1, 3, 1, 1).requires_grad_()
    distill_loss(logits, torch.tensor([0.2, 0.3, 0.5]).view(1, 3, 1, 1)).backward()
    assert logits.grad.abs().max() < 1e-6
    assert float(distill_loss(logits.detach(), torch.zeros(1, 3, 1, 1))) == 0.0


def test_soft_targets_move_with_the_frame_through_scale_rotation_flip_and_crop():
    # the teacher here is the labels as one-hot maps: after augmentation the two must still
    # agree pixel for pixel, and where rotation or padding uncovers the crop (label 255) the
    # teacher must have no target rather than a made-up one
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 19, (12, 16)), np.ones((10, 10), np.int64))  # 120 x 160
    onehot = (np.arange(19)[:, None, None] == labels[None]).astype(np.float32)
    augment = PairedAugment(crop=(128, 176), scale_range=(0.6, 1.6), max_rotation_deg=10,
                            flip_p=0.5)
    uncovered = 0
    for seed in range(6):
        torch.manual_seed(seed)
        out = augment({'rgb': rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
                       'labels': labels, 'teacher': onehot})
        t, lab = out['teacher'], out['labels']
        assert t.shape == (19, 128, 176)
        covered = lab != 255
        assert torch.equal(t.argmax(0)[covered], lab[covered])
        assert torch.all(t.sum(0)[~covered] == 0)
        uncovered += int((~covered).sum())
    assert uncovered > 0                       # the padding and rotation cases were exercised


def _published_file(path, width=0.5):
    torch.manual_seed(0)
    torch.save(ESPNetv2Segmentation(width).state_dict(), path)
    return path


def test_teacher_targets_are_model_class_probabilities_at_half_the_frame(tmp_path):
    teacher = Teacher(_published_file(tmp_path / 't.pth'), input_size=(64, 96))
    rgb = np.random.default_rng(1).integers(0, 256, (45, 60, 3), dtype=np.uint8)
    p = teacher.probabilities(rgb)
    assert p.shape == (19, 23, 30) and p.dtype == np.float16
    np.testing.assert_allclose(p.astype(np.float32).sum(0), 1.0, atol=2e-3)
    flipped = Teacher(tmp_path / 't.pth', input_size=(64, 96), flip=True)
    mirrored = flipped.probabilities(rgb[:, ::-1])[:, :, ::-1]
    # flip averaging is symmetric: the mirrored frame gives the mirrored targets
    np.testing.assert_allclose(mirrored.astype(np.float32),
                               flipped.probabilities(rgb).astype(np.float32), atol=2e-3)


def test_a_file_that_is_not_a_published_segmentation_network_is_refused(tmp_path):
    # tried: a file with an encoder only (a classification-style state), and a missing path
    enc = ESPNetv2Segmentation(0.5).base_net.state_dict()
    torch.save(enc, tmp_path / 'enc.pth')
    with pytest.raises(TeacherError, match='enc.pth is not a published ESPNetv2 segmentation'):
        Teacher(tmp_path / 'enc.pth')
    with pytest.raises(TeacherError, match='not found'):
        Teacher(tmp_path / 'absent.pth')


def test_the_cache_runs_each_frame_once(tmp_path):
    frames = [{'name': f'f{i}', 'rgb': np.full((32, 48, 3), 40 * i, np.uint8)} for i in range(3)]
    targets = SoftTargets(tmp_path / 'cache')
    teacher = Teacher(_published_file(tmp_path / 't.pth'), input_size=(32, 64))
    targets.build(frames, teacher)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / 'cache').iterdir()}
    assert sorted(stamps) == ['f0.npy', 'f1.npy', 'f2.npy']   # no .part left behind
    (tmp_path / 'cache' / 'f1.npy').unlink()
    targets.build(frames, teacher)                            # only f1 runs again
    again = {p.name: p.stat().st_mtime_ns for p in (tmp_path / 'cache').iterdir()}
    assert again['f0.npy'] == stamps['f0.npy'] and again['f2.npy'] == stamps['f2.npy']
    full = targets('f1', (32, 48))
    assert full.shape == (19, 32, 48)
    np.testing.assert_allclose(full.sum(0), 1.0, atol=5e-3)


def test_a_distill_weight_without_a_teacher_is_a_config_error():
    with pytest.raises(ConfigError, match='distill needs a teacher'):
        from_dict({'stages': [{'name': 's', 'loss': {'seg': 1.0, 'distill': 1.0}}]})
    with pytest.raises(ConfigError, match='multiples of 32'):
        from_dict({'distill': {'teacher': 'x.pth', 'input_size': [360, 480]}})


def test_a_student_trained_on_the_teacher_alone_learns_what_the_teacher_says(tmp_path):
    # The teacher's targets say "car" everywhere; the labels are all "unlabelled". A student
    # that learns car from this learnt it from the teacher (through the cache, the dataset,
    # the augmentation and the loss); without the distill term it has nothing to learn from.
    cam = camvid_tree(tmp_path / 'camvid', n=4, seed=3, label=11)   # all unlabelled
    cache = tmp_path / 'cache'
    cache.mkdir()
    car = np.zeros((19, 32, 48), np.float16)
    car[CAR] = 1.0
    for i in range(4):                       # cached already: the build leaves them alone
        np.save(cache / f'f{i}.npy', car)
    out = tmp_path / 'run'
    config = tmp_path / 'run.yaml'
    config.write_text(yaml.safe_dump({
        'output_dir': str(out), 'device': 'cpu', 'seed': 0,
        'data': {'dataset': 'camvid', 'root': str(cam), 'crop': [64, 96], 'num_workers': 0,
                 'scale_range': [1.0, 1.0]},
        'model': {'preset': 'street', 'loops': 1, 'depth_edges': [5.0, 10.0, 20.0, 40.0]},
        'distill': {'teacher': str(_published_file(tmp_path / 't.pth')),
                    'cache_dir': str(cache)},
        'optim': {'lr': 0.05, 'batch_size': 2},
        'val_every': 0, 'checkpoint_every': 100, 'log_every': 1,
        'stages': [{'name': 's', 'iterations': 8, 'model': {'gate_source': 'predicted'},
                    'loss': {'seg': 1.0, 'distill': 1.0}}]}))
    assert train_main(['--config', str(config)]) == 0
    with open(out / 's' / 'log.csv') as f:
        rows = [r for r in csv.DictReader(f) if r['loss']]
    distill = [float(r['distill']) for r in rows]
    assert distill[-1] < 0.5 * distill[0]
    model, info, _ = load_checkpoint(out / 'model.pt')
    labels = Predictor(model, info, device='cpu').predict(
        cv2.imread(str(cam / 'val' / 'f0.png'))[..., ::-1].copy()).labels
    assert (labels == CAR).mean() > 0.9
