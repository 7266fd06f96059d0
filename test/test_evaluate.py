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

"""depthgate-eval: files written, numbers equal to metrics computed directly on the frames."""
import json

import cv2
from depthgate_ros.cli.evaluate import main as eval_main
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.data.sensors import measure, sensor_by_name
from depthgate_ros.inference import Predictor
from depthgate_ros.metrics import DepthMetric, SegmentationMetric
from depthgate_ros.model.checkpoint import ModelInfo, save_checkpoint
from depthgate_ros.training.datasets import SYNTHETIC_VAL_FIRST_SEED, SyntheticStreetDataset
import numpy as np
import pytest


def test_eval_writes_metrics_table_and_grid(tmp_path, make_model):
    model = make_model(seed=4, loops=2)
    info = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)
    ckpt = save_checkpoint(tmp_path / 'm.pt', model, info)
    out = tmp_path / 'eval'
    assert eval_main(['--checkpoint', str(ckpt), '--synthetic-frames', '3',
                      '--synthetic-size', '64', '128', '--out', str(out), '--device', 'cpu',
                      '--grid-frames', '2', '--max-depth', '40']) == 0
    result = json.loads((out / 'metrics.json').read_text())
    assert result['frames'] == 3 and {'loop0', 'loop1', 'loop2', 'final'} <= set(result)
    # independent check: the same frames through the Predictor and a fresh metric
    data = SyntheticStreetDataset(3, SYNTHETIC_VAL_FIRST_SEED, (64, 128))
    predictor = Predictor(model, info, device='cpu')
    for loop in (0, 2):
        m = SegmentationMetric(19)
        for s in data:
            m.update(predictor.predict(s['rgb'], loops=loop).labels, s['labels'])
        ref = m.compute()
        assert abs(ref['miou'] - result[f'loop{loop}']['miou']) < 1e-12
        for key in ('recall', 'precision'):
            got = list(result[f'loop{loop}'][key].values())
            assert got == pytest.approx(ref[key], nan_ok=True)
    d = DepthMetric()            # the cap by hand: ground truth beyond 40 m left out
    for s in data:
        gt = np.where(s['depth'] <= 40, s['depth'], np.nan)
        d.update(predictor.predict(s['rgb'], loops=2).depth, gt)
    assert result['depth_cap_m'] == 40
    assert result['loop2']['depth'] == pytest.approx(d.compute())
    table = (out / 'metrics.md').read_text()
    assert '| loop2 |' in table and 'mIoU' in table and '<= 40 m' in table
    # a row per class of the final output: IoU, recall, precision ('-' where undefined)
    final = result['final']
    for name in final['iou']:
        cells = [final[k][name] for k in ('iou', 'recall', 'precision')]
        row = ' | '.join('-' if np.isnan(v) else f'{v:.3f}' for v in cells)
        assert f'| {name} | {row} |' in table
    grid = cv2.imread(str(out / 'grid.png'))
    assert grid is not None and grid.shape[0] > 2 * 64   # two rows of panels


def test_eval_reports_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'garbage')
    assert eval_main(['--checkpoint', str(bad), '--out', str(tmp_path / 'o')]) == 2
    assert 'corrupt' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_eval_leaves_no_half_written_folder(tmp_path, make_model, monkeypatch, capsys):
    """
    Inputs tried: a run that fails after metrics.json is written, then an --out that exists.

    The failed run leaves neither the folder nor its hidden temporary; the existing one is
    refused with its name and left as it was.
    """
    import depthgate_ros.cli.evaluate as evaluate
    ckpt = save_checkpoint(tmp_path / 'm.pt', make_model(seed=4, loops=1),
                           ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS))
    out = tmp_path / 'runs' / 'eval'       # its parent does not exist yet either
    argv = ['--checkpoint', str(ckpt), '--synthetic-frames', '1', '--synthetic-size', '32', '64',
            '--out', str(out), '--device', 'cpu', '--grid-frames', '1']

    def disk_full(path, image):
        assert (path.parent / 'metrics.json').exists()     # written, but not yet visible
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(evaluate, 'write_png', disk_full)
    with pytest.raises(OSError, match='No space'):
        eval_main(argv)
    assert list((tmp_path / 'runs').iterdir()) == []
    monkeypatch.undo()
    assert eval_main(argv) == 0 and (out / 'grid.png').exists()
    before = sorted(p.name for p in out.iterdir())
    assert eval_main(argv) == 2
    assert f'{out} exists' in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_eval_compares_gates_on_measured_depth_from_another_camera(tmp_path, make_model):
    model = make_model(seed=4, loops=1)
    info = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)
    ckpt = save_checkpoint(tmp_path / 'm.pt', model, info)
    out = tmp_path / 'eval'
    assert eval_main(['--checkpoint', str(ckpt), '--synthetic-frames', '2',
                      '--synthetic-size', '64', '128', '--out', str(out), '--device', 'cpu',
                      '--sensor-depth', 'rgbd', '--gate', 'predicted', 'sensor', 'hybrid',
                      '--synthetic-camera', 'height_m=2.2', 'pitch_deg=8',
                      '--grid-frames', '1']) == 0
    runs = {g: json.loads((out / f'metrics_{g}.json').read_text())
            for g in ('predicted', 'sensor', 'hybrid')}
    assert {g: r['gate_source'] for g, r in runs.items()} == {
        'predicted': 'predicted', 'sensor': 'sensor', 'hybrid': 'hybrid'}
    # the same frames for every gate, from the tall camera, with what a D435 measures of them
    data = SyntheticStreetDataset(2, SYNTHETIC_VAL_FIRST_SEED, (64, 128),
                                  {'height_m': 2.2, 'pitch_deg': 8})
    assert data.camera.height_m == 2.2 and data.camera.fx == 140.0
    d435 = sensor_by_name('rgbd')
    predictor = Predictor(model, info, device='cpu')
    seg, valid = SegmentationMetric(19), []
    for i, s in enumerate(data):
        depth = measure(d435, s['depth'], 140.0, np.random.default_rng((17, i)), s['rgb'])
        # the D435 stops at 10 m: a street frame has depth on part of the image only
        assert np.isnan(depth[np.isfinite(s['depth']) & (s['depth'] > 10)]).all()
        valid.append(np.isfinite(depth).mean())
        seg.update(predictor.predict(s['rgb'], depth, gate='hybrid').labels, s['labels'])
    assert runs['hybrid']['final']['miou'] == pytest.approx(seg.compute()['miou'], abs=1e-12)
    assert runs['hybrid']['sensor_valid_fraction'] == pytest.approx(np.mean(valid))
    assert 0 < np.mean(valid) < 0.9
    table = (out / 'compare.md').read_text()
    assert '| hybrid (hybrid) |' in table and 'height_m=2.2 pitch_deg=8' in table
    gates = cv2.imread(str(out / 'gates.png'))
    assert 5 * 256 <= gates.shape[1] < 6 * 256     # image, sensor depth, three gates


def test_eval_applies_tta_and_reports_pixel_accuracy_by_hand(tmp_path, make_model):
    model = make_model(seed=6, loops=1)
    info = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)
    ckpt = save_checkpoint(tmp_path / 'm.pt', model, info)
    results = {}
    for name, extra in (('plain', []), ('tta', ['--tta-flip', '--tta-scales', '0.75', '1'])):
        out = tmp_path / name
        assert eval_main(['--checkpoint', str(ckpt), '--synthetic-frames', '2',
                          '--synthetic-size', '64', '128', '--out', str(out), '--device',
                          'cpu', '--grid-frames', '0', *extra]) == 0
        results[name] = json.loads((out / 'metrics.json').read_text())['final']
    data = SyntheticStreetDataset(2, SYNTHETIC_VAL_FIRST_SEED, (64, 128))
    tta = Predictor(model, info, device='cpu', tta_flip=True, tta_scales=(0.75, 1.0))
    hits = total = 0
    for s in data:                          # pixel accuracy by hand: 255 is ignored
        pred, gt = tta.predict(s['rgb']).labels, s['labels']
        keep = gt != 255
        hits += int((pred[keep] == gt[keep]).sum())
        total += int(keep.sum())
    assert results['tta']['pixel_accuracy'] == pytest.approx(hits / total, abs=1e-12)
    # and TTA was applied: the averaged depth differs from the single view's
    assert results['tta']['depth']['abs_rel'] != results['plain']['depth']['abs_rel']


def test_eval_iiou_and_iou_equal_cityscapesscripts(tmp_path, monkeypatch):
    # the bundled (trained) model, so that things are found and iIoU is not trivially 0
    from conftest import cityscapes_reference
    from depthgate_ros.weights import bundled_checkpoint
    ckpt = bundled_checkpoint()
    if ckpt is None:
        pytest.skip('this build ships no bundled model')
    out = tmp_path / 'eval'
    assert eval_main(['--checkpoint', str(ckpt), '--synthetic-frames', '3',
                      '--synthetic-size', '128', '256', '--out', str(out), '--device', 'cpu',
                      '--grid-frames', '0']) == 0
    got = json.loads((out / 'metrics.json').read_text())['final']
    predictor = Predictor.from_checkpoint(ckpt, device='cpu')
    data = SyntheticStreetDataset(3, SYNTHETIC_VAL_FIRST_SEED, (128, 256))
    ref = cityscapes_reference([(predictor.predict(s['rgb']).labels, s['labels'],
                                 s['instances']) for s in data], tmp_path / 'ref', monkeypatch)
    assert 0.05 < ref['averageScoreInstClasses'] < 1
    assert got['miiou'] == pytest.approx(ref['averageScoreInstClasses'], abs=1e-6)
    assert got['miou'] == pytest.approx(ref['averageScoreClasses'], abs=1e-6)
    for name, iou in got['iou'].items():
        r = ref['classScores'][name]
        assert (np.isnan(r) and np.isnan(iou)) or iou == pytest.approx(r, abs=1e-6), name
