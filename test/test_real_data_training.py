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
Training one model on datasets with different classes, and scoring it in each one's classes.

A CamVid tree (11 classes, no depth) and a synthetic Cityscapes tree (19 classes and depth)
are written here; a run trains on both and validates on CamVid in CamVid's classes.
"""
import csv
from pathlib import Path
from types import SimpleNamespace

from conftest import camvid_tree
import cv2
from depthgate_ros.cli.train import main as train_main
from depthgate_ros.data.labelled import camvid
from depthgate_ros.data.labels import CAMVID_NAMES, CITYSCAPES_NAMES, IGNORE_ID
from depthgate_ros.data.synthetic import Camera, export_cityscapes
from depthgate_ros.evaluation import evaluate_dataset
from depthgate_ros.model import build_model, ModelConfig
from depthgate_ros.model.checkpoint import load_checkpoint, ModelInfo
from depthgate_ros.training.config import ConfigError, DataConfig, load_config
from depthgate_ros.training.datasets import TrainingSet
import numpy as np
import pytest
import torch
import yaml


@pytest.fixture(scope='module')
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    cam = camvid_tree(root / 'camvid')
    synth = root / 'synthetic'
    camera = Camera(width=96, height=64, fx=105.0, fy=105.0)
    export_cityscapes(synth, 'train', range(3), camera)
    return cam, synth


def test_training_set_puts_each_dataset_in_one_target_space(trees):
    cam, synth = trees
    cfg = DataConfig(dataset='camvid', root=str(cam),
                     also=[{'dataset': 'cityscapes', 'root': str(synth)}])
    ts = TrainingSet(cfg, CITYSCAPES_NAMES)
    assert len(ts) == 6
    # CamVid's classes come after the 19 model classes, in CamVid's order
    raw = camvid(cam, 'train')[0]['labels']
    got = ts[0]['labels']
    np.testing.assert_array_equal(got, np.where(raw == IGNORE_ID, IGNORE_ID, raw + 19))
    assert ts.cover.shape == (30, 19)
    torch.testing.assert_close(ts.cover[:19], torch.eye(19))
    car = 19 + CAMVID_NAMES.index('car')
    assert {CITYSCAPES_NAMES[i] for i in torch.nonzero(ts.cover[car]).ravel()} == {
        'car', 'truck', 'bus', 'train'}
    # the synthetic frames keep their own labels and depth
    s = ts[3]
    assert s['labels'].max() < 19 or (s['labels'] == IGNORE_ID).any()
    assert np.isfinite(s['depth']).any()
    # one dataset in the model's classes: plain cross-entropy, no cover
    assert TrainingSet(DataConfig(dataset='cityscapes', root=str(synth)),
                       CITYSCAPES_NAMES).cover is None


class _Fixed:
    """A predictor whose labels are given: Cityscapes classes in column blocks of the image."""

    loops = 0

    def __init__(self, classes):
        self.info = ModelInfo(CITYSCAPES_NAMES, ((0, 0, 0),) * 19)
        self.classes = classes

    def predict_loops(self, rgb, depth, gate=None, focal_px=None):
        h, w = rgb.shape[:2]
        labels = np.zeros((h, w), np.uint8)
        for c, idx in zip(self.classes, np.array_split(np.arange(w), len(self.classes))):
            labels[:, idx] = c
        return [SimpleNamespace(labels=labels, depth=None, gate_source='none')]


def test_a_dataset_with_its_own_classes_is_scored_in_them(tmp_path):
    # one frame: left half predicted "truck", right half "sky"; ground truth car | building
    (tmp_path / 'val').mkdir()
    (tmp_path / 'valannot').mkdir()
    cv2.imwrite(str(tmp_path / 'val' / 'a.png'), np.zeros((4, 8, 3), np.uint8))
    gt = np.zeros((4, 8), np.uint8)
    gt[:, :4] = CAMVID_NAMES.index('car')
    gt[:, 4:] = CAMVID_NAMES.index('building')
    gt[0, 4:] = CAMVID_NAMES.index('sky')
    cv2.imwrite(str(tmp_path / 'valannot' / 'a.png'), gt)
    predictor = _Fixed([CITYSCAPES_NAMES.index('truck'), CITYSCAPES_NAMES.index('sky')])
    r = evaluate_dataset(predictor, camvid(tmp_path, 'val'))['final']
    iou = r['iou']
    assert list(iou) == list(CAMVID_NAMES)
    assert iou['car'] == 1.0                   # truck counts as CamVid's car
    assert iou['sky'] == pytest.approx(4 / 16)   # 4 sky pixels of 16 predicted sky
    assert iou['building'] == 0.0
    assert r['miou'] == pytest.approx((1.0 + 0.25 + 0.0) / 3)   # classes absent: not scored


class _TwoClasses:
    """A dataset with classes of its own that leave most model classes uncovered."""

    class_names = ('road', 'vehicle')
    covers = (('road',), ('car', 'truck'))

    def __len__(self):
        return 1

    def __getitem__(self, i):
        labels = np.zeros((4, 8), np.uint8)              # left half road, right half vehicle
        labels[:, 4:] = 1
        return {'rgb': np.zeros((4, 8, 3), np.uint8), 'labels': labels}


def test_a_model_class_no_dataset_class_covers_is_wrong_where_predicted():
    # predicted: person (covered by neither class) | car; truth: road | vehicle. The person
    # half is a miss for road, not a pixel left out: road 0, vehicle 1, mIoU 0.5
    predictor = _Fixed([CITYSCAPES_NAMES.index('person'), CITYSCAPES_NAMES.index('car')])
    r = evaluate_dataset(predictor, _TwoClasses())['final']
    assert r['iou'] == {'road': 0.0, 'vehicle': 1.0}
    assert r['miou'] == pytest.approx(0.5)


def test_train_on_camvid_and_synthetic_validates_in_camvid_classes(trees, tmp_path):
    cam, synth = trees
    raw = {
        'output_dir': str(tmp_path / 'run'), 'seed': 0, 'device': 'cpu',
        'data': {'dataset': 'camvid', 'root': str(cam),
                 'also': [{'dataset': 'cityscapes', 'root': str(synth)}],
                 'crop': [64, 96], 'scale_range': [1.0, 1.0], 'num_workers': 0},
        'model': {'preset': 'street', 'loops': 1},
        'optim': {'lr': 0.01, 'batch_size': 2, 'freeze_bn': 'backbone'},
        'checkpoint_every': 100, 'val_every': 0, 'log_every': 1,
        'stages': [{'name': 'joint', 'iterations': 3,
                    'model': {'gate_source': 'predicted', 'loops': 1},
                    'loss': {'seg': 1.0, 'depth_reg': 0.1, 'depth_cls': 0.1},
                    'gate_mix': {'hybrid': 0.5, 'predicted': 0.5}}],
    }
    path = tmp_path / 'run.yaml'
    path.write_text(yaml.safe_dump(raw))
    assert train_main(['--config', str(path)]) == 0
    model, info, extra = load_checkpoint(tmp_path / 'run' / 'model.pt')
    assert info.class_names == CITYSCAPES_NAMES and model.cfg.backbone == 'espnetv2'
    assert info.focal_px == 105.0          # from the frames that have a camera
    with open(tmp_path / 'run' / 'joint' / 'log.csv') as f:
        table = list(csv.DictReader(f))
    rows = [r for r in table if r['loss']]
    assert len(rows) == 3 and all(np.isfinite(float(r['loss'])) for r in rows)
    # the depth losses ran (synthetic frames in the batches have depth)
    assert any(float(r['depth_reg']) > 0 for r in rows)
    # validated on CamVid: a score in its 11 classes
    assert [float(r['val_miou']) for r in table if r['val_miou']] == [
        pytest.approx(extra['best_miou'], abs=1e-5)]


@pytest.mark.parametrize('also, match', [
    ([{'dataset': 'synthetic', 'root': 'x'}], 'data.also'),
    ([{'dataset': 'camvid'}], 'data.also'),
    ([{'dataset': 'camvid', 'root': 'x', 'weight': 2}], 'data.also'),
])
def test_data_also_is_validated(tmp_path, also, match):
    path = tmp_path / 'c.yaml'
    path.write_text(yaml.safe_dump({'data': {'dataset': 'camvid', 'root': 'x', 'also': also}}))
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_street_model_builds_with_a_published_layout_file(tmp_path):
    from depthgate_ros.model.espnetv2 import ESPNetv2Segmentation
    width = ModelConfig.preset('street').backbone_width
    torch.save(ESPNetv2Segmentation(width).state_dict(), tmp_path / 'w.pth')
    model = build_model(ModelConfig.preset('street'), str(tmp_path / 'w.pth'))
    want = ESPNetv2Segmentation(width)
    want.load_state_dict(torch.load(tmp_path / 'w.pth', weights_only=True))
    for k, v in want.base_net.state_dict().items():
        torch.testing.assert_close(model.backbone.encoder.state_dict()[k], v)


def test_finetune_the_bundled_model_on_a_labelled_folder_with_the_shipped_config(tmp_path):
    # a folder as a user labels their robot's frames: ids 1 (road) and 2 (vehicle)
    rng = np.random.default_rng(5)
    folder = tmp_path / 'frames'
    (folder / 'images').mkdir(parents=True)
    (folder / 'labels').mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / 'images' / f'{i}.jpg'),
                    rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
        cv2.imwrite(str(folder / 'labels' / f'{i}.png'),
                    rng.integers(0, 3, (64, 96)).astype(np.uint8))
    (folder / 'classes.yaml').write_text(yaml.safe_dump({'classes': [
        {'name': 'road', 'ids': [1], 'covers': ['road']},
        {'name': 'vehicle', 'ids': [2], 'covers': ['car', 'truck', 'bus']}]}))
    config = Path(__file__).resolve().parents[1] / 'config' / 'finetune_own_frames.yaml'
    out = tmp_path / 'run'
    assert train_main(['--config', str(config), f'data.root={folder}', f'output_dir={out}',
                       'device=cpu', 'data.crop=[64, 96]', 'data.num_workers=0',
                       'optim.batch_size=2', 'stages.finetune.iterations=2',
                       'val_every=0']) == 0
    tuned, info, _ = load_checkpoint(out / 'model.pt')
    start, start_info, _ = load_checkpoint('street')
    # it started from the bundled model and kept its depth bins and camera
    assert tuned.cfg.depth_edges == start.cfg.depth_edges
    assert info.focal_px == start_info.focal_px
    a = tuned.backbone.encoder.level4[6].proj_1x1.conv.weight
    b = start.backbone.encoder.level4[6].proj_1x1.conv.weight
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=1e-2)
    assert info.provenance['dataset'] == 'folder'
