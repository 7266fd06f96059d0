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

"""The head ablation: cached features equal the network's, heads on them equal the network."""
import json

from conftest import camvid_tree
import cv2
from depthgate_ros.cli.head_ablation import main as head_ablation_main
from depthgate_ros.data.sensors import sensor_by_name
from depthgate_ros.data.synthetic import Camera, export_cityscapes
from depthgate_ros.inference import normalize_image
from depthgate_ros.metrics import SegmentationMetric
from depthgate_ros.model.checkpoint import load_checkpoint
from depthgate_ros.training.datasets import SYNTHETIC_VAL_FIRST_SEED, SyntheticStreetDataset
from depthgate_ros.training.feature_cache import cache_split, CachedSplit
from depthgate_ros.training.head_ablation import (distance_bin, evaluate_head, head_model,
                                                  miou, paired_bootstrap, Row, train_head)
import numpy as np
import pytest
import torch
import yaml

SIZE = (64, 128)


@pytest.fixture(scope='module')
def cached(tiny_checkpoint, tmp_path_factory):
    model, info, _ = load_checkpoint(tiny_checkpoint)
    root = tmp_path_factory.mktemp('cache')
    for name, frames, first in (('train', 6, 0), ('val', 4, SYNTHETIC_VAL_FIRST_SEED)):
        cache_split(model, info, root / name, frames=frames, first_seed=first, size=SIZE,
                    sensor=sensor_by_name('car_stereo'), chunk=4, log=lambda *_: None)
    return model, info, root


def test_cached_features_are_the_networks_and_an_interrupted_cache_resumes(
        cached, tmp_path):
    model, info, root = cached
    train = CachedSplit.load(root / 'train')
    assert train.features.shape == (6, 16, 8, 16) and train.features.dtype == np.float16
    sample = SyntheticStreetDataset(6, 0, SIZE)[5]
    image = torch.from_numpy(sample['rgb']).permute(2, 0, 1)[None]
    with torch.inference_mode():
        # backbone then stem by hand, not through the cache's own call
        feat = model.stem(model.backbone(normalize_image(
            image, torch.tensor(info.mean), torch.tensor(info.std)))[-1])
    np.testing.assert_allclose(train.features[5], feat[0].numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(train.labels[5], sample['labels'])
    # stop after the first chunk of 4 (the log call is where a kill would land), resume
    calls = []

    def killed(msg):
        calls.append(msg)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        cache_split(model, info, tmp_path / 'train', frames=6, first_seed=0, size=SIZE,
                    sensor=sensor_by_name('car_stereo'), chunk=4, log=killed)
    assert json.loads((tmp_path / 'train' / 'progress.json').read_text())['done'] == 4
    with pytest.raises(FileNotFoundError, match='no complete feature cache'):
        CachedSplit.load(tmp_path / 'train')
    cache_split(model, info, tmp_path / 'train', frames=6, first_seed=0, size=SIZE,
                sensor=sensor_by_name('car_stereo'), chunk=4, log=calls.append)
    assert calls[-1].endswith('6/6 frames cached') and len(calls) == 2
    resumed = CachedSplit.load(tmp_path / 'train')
    for name in ('features', 'labels', 'depth', 'sensor'):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(train, name), name)


def test_a_head_on_cached_features_is_the_full_network(cached):
    # the same head weights inside the full model (backbone + stem run live) and on the cache
    model, info, root = cached
    val = CachedSplit.load(root / 'val')
    row = Row('hybrid', {'gate_source': 'predicted', 'recurrent': False, 'loops': 0},
              gate='hybrid')
    base = model.cfg.replace(recurrent=False, loops=0)
    net = head_model(base, row)
    full = type(model)(net.cfg).eval()
    full.backbone.load_state_dict(model.backbone.state_dict())
    full.stem.load_state_dict(model.stem.state_dict())
    full.head.load_state_dict(net.head.state_dict())
    net.eval()
    got = evaluate_head(net, row, val, num_classes=19, distance_edges_m=[10.0, 25.0])
    data = SyntheticStreetDataset(4, SYNTHETIC_VAL_FIRST_SEED, SIZE)
    ref = SegmentationMetric(19)
    for i in range(4):
        s = data[i]
        image = normalize_image(torch.from_numpy(s['rgb']).permute(2, 0, 1)[None],
                                torch.tensor(info.mean), torch.tensor(info.std))
        sensor = torch.from_numpy(np.asarray(val.sensor[i], np.float32))[None, None]
        with torch.inference_mode():
            pred = full(image, sensor, gate='hybrid')[-1]['seg'].argmax(1)[0].numpy()
        ref.update(pred, s['labels'])
    # float16 features: a handful of boundary pixels may flip
    conf = got['confusion'][:, 0].sum(0)
    assert np.abs(conf - ref.confusion).sum() <= 0.002 * ref.confusion.sum()
    # near, middle, far and sky partition every labelled pixel
    assert np.array_equal(got['confusion'][:, 1:].sum(1) <= got['confusion'][:, 0], np.full(
        got['confusion'][:, 0].shape, True))
    sky = (np.asarray(val.labels) != 255) & ~np.isfinite(np.asarray(val.depth, np.float32))
    assert got['confusion'][:, 0].sum() - got['confusion'][:, 1:].sum() == sky.sum()
    assert got['gate_hist'].sum() > 0


def test_rows_train_on_the_same_batches_and_branches_can_be_forced(cached, monkeypatch):
    model, _, root = cached
    train, val = CachedSplit.load(root / 'train'), CachedSplit.load(root / 'val')
    base = model.cfg.replace(recurrent=False, loops=0)
    seen = {}
    batch = CachedSplit.batch
    for name, gate in (('baseline', 'none'), ('predicted', 'predicted')):
        seen[name] = []
        monkeypatch.setattr(CachedSplit, 'batch', lambda self, index, device='cpu', n=name: (
            seen[n].append(sorted(index)) or batch(self, index, device)))
        row = Row(name, {'gate_source': gate, 'recurrent': False, 'loops': 0})
        net, minutes = train_head(base, row, 0, train, iterations=3, batch_size=4, lr=0.01,
                                  log=lambda *_: None)
        assert minutes > 0
    assert seen['baseline'] == seen['predicted'] and len(seen['baseline']) == 3
    monkeypatch.setattr(CachedSplit, 'batch', batch)
    # forcing branch 2 everywhere is what sensor gating does when every pixel is 18 m away
    # (the tiny model's bin 2 is 12-24 m; its sensor bins are one-hot)
    forced = evaluate_head(net, row, val, num_classes=19, distance_edges_m=[10.0, 25.0],
                           forced_branch=2)['confusion']
    at_18m = CachedSplit(val.features, val.labels, val.depth,
                         np.full(val.sensor.shape, 18.0, np.float16))
    sensed = evaluate_head(net, Row('s', row.model, gate='sensor'), at_18m, num_classes=19,
                           distance_edges_m=[10.0, 25.0])
    np.testing.assert_array_equal(forced, sensed['confusion'])
    assert sensed['gate_hist'][:, 2].sum() == sensed['gate_hist'].sum() > 0
    other = evaluate_head(net, row, val, num_classes=19, distance_edges_m=[10.0, 25.0],
                          forced_branch=0)['confusion']
    assert not np.array_equal(other, forced)


def test_paired_bootstrap_and_distance_bins():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 50, (30, 4, 4))
    conf[:, np.arange(4), np.arange(4)] += 100
    same = paired_bootstrap([conf], [conf], draws=100)
    assert same['difference'] == 0 and same['ci95'] == [0.0, 0.0]
    better = conf.copy()
    better[:, np.arange(4), np.arange(4)] += 100               # more right on every frame
    up = paired_bootstrap([better], [conf], draws=200)
    assert up['difference'] > 0 and up['ci95'][0] > 0 and up['p_below_zero'] == 0
    assert up['difference'] == pytest.approx(miou(better.sum(0)) - miou(conf.sum(0)))
    # by hand: IoU = tp / (tp + fp + fn)
    c = np.array([[3, 1], [2, 4]])
    assert miou(c) == pytest.approx((3 / 6 + 4 / 7) / 2)
    assert distance_bin(np.array([5.0, 10.0, 24.9, 25.0, np.nan]), [10, 25]).tolist() == [
        0, 1, 1, 2, -1]


def test_cli_tabulates_rows_and_skips_finished_runs(tiny_checkpoint, tmp_path, capsys):
    cfg = {'checkpoint': str(tiny_checkpoint), 'cache_dir': str(tmp_path / 'cache'),
           'output_dir': str(tmp_path / 'out'), 'size': list(SIZE), 'train_frames': 4,
           'eval_frames': 3, 'iterations': 2, 'batch_size': 2}
    cfg['forced_branches'] = ['predicted']
    cfg['rows'] = [{'name': 'baseline', 'model': {'gate_source': 'none'}, 'seeds': 2},
                   {'name': 'predicted', 'model': {'gate_source': 'predicted'}, 'seeds': 2},
                   {'name': 'sensor', 'model': {'gate_source': 'sensor'}, 'seeds': 1}]
    path = tmp_path / 'heads.yaml'
    path.write_text(yaml.safe_dump(cfg))
    assert head_ablation_main(['--config', str(path)]) == 0
    md = (tmp_path / 'out' / 'results.md').read_text()
    for text in ('| baseline | 2 | 2 |', '| predicted | 2 | 2 |', '| sensor | 2 | 1 |', 'near',
                 'every pixel forced through one branch', 'p90 / p10'):
        assert text in md, text
    result = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert len(result['predicted']['miou']) == 2 and 'bootstrap' in result['predicted']
    stamp = (tmp_path / 'out' / 'baseline' / 'seed0.npz').stat().st_mtime_ns
    assert head_ablation_main(['--config', str(path), 'iterations=5']) == 0
    assert (tmp_path / 'out' / 'baseline' / 'seed0.npz').stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert head_ablation_main(['--config', str(path), 'rows=[]']) == 2
    assert 'unique name' in capsys.readouterr().err


def test_cli_on_real_frames_trains_through_the_cover_and_scores_in_their_classes(
        tiny_checkpoint, tmp_path):
    # a CamVid tree (11 classes, no depth) beside a synthetic one (19 classes and depth), as
    # the street model trains; rows are scored on CamVid's val frames in CamVid's classes
    cam = camvid_tree(tmp_path / 'camvid', h=SIZE[0], w=SIZE[1], seed=2)
    synth = tmp_path / 'synthetic'
    export_cityscapes(synth, 'train', range(2), Camera(width=SIZE[1], height=SIZE[0], fx=140.0,
                                                       fy=140.0))
    cfg = {'checkpoint': str(tiny_checkpoint), 'cache_dir': str(tmp_path / 'cache'),
           'output_dir': str(tmp_path / 'out'), 'iterations': 2, 'batch_size': 2,
           'label_scale': 0.5,
           'data': {'dataset': 'camvid', 'root': str(cam), 'val_split': 'val',
                    'also': [{'dataset': 'cityscapes', 'root': str(synth)}]},
           'rows': [{'name': 'baseline', 'model': {'gate_source': 'none'}, 'seeds': 1},
                    {'name': 'predicted', 'model': {'gate_source': 'predicted'}, 'seeds': 1}]}
    path = tmp_path / 'heads.yaml'
    path.write_text(yaml.safe_dump(cfg))
    assert head_ablation_main(['--config', str(path)]) == 0
    train = CachedSplit.load(tmp_path / 'cache' / 'train')
    assert len(train) == 5
    # CamVid frames: targets after the 19 model classes, no depth; synthetic: depth
    assert np.asarray(train.labels[:3]).max() >= 19 and np.isnan(train.depth[0]).all()
    assert np.isfinite(np.asarray(train.depth[3], np.float32)).any()
    conf = np.load(tmp_path / 'out' / 'baseline' / 'seed0.npz')['confusion']
    assert conf.shape[-2:] == (11, 11)
    # labels at half size: every other pixel of every other row
    assert train.labels.shape == (5, SIZE[0] // 2, SIZE[1] // 2)
    labelled = sum((cv2.imread(str(cam / 'valannot' / f'f{i}.png'), 0)[::2, ::2] < 11).sum()
                   for i in range(3))
    assert conf[:, 0].sum() == labelled            # every labelled pixel, once
    md = (tmp_path / 'out' / 'results.md').read_text()
    assert '| row | sky | building |' in md and 'bicyclist' in md
    assert 'by distance' not in md and 'nan' not in md   # real frames: no depth to bin by
