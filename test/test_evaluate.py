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
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.evaluate import main as eval_main
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
        assert abs(m.compute()['miou'] - result[f'loop{loop}']['miou']) < 1e-12
    d = DepthMetric()            # the cap by hand: ground truth beyond 40 m left out
    for s in data:
        gt = np.where(s['depth'] <= 40, s['depth'], np.nan)
        d.update(predictor.predict(s['rgb'], loops=2).depth, gt)
    assert result['depth_cap_m'] == 40
    assert result['loop2']['depth'] == pytest.approx(d.compute())
    table = (out / 'metrics.md').read_text()
    assert '| loop2 |' in table and 'mIoU' in table and '<= 40 m' in table
    grid = cv2.imread(str(out / 'grid.png'))
    assert grid is not None and grid.shape[0] > 2 * 64   # two rows of panels


def test_eval_reports_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'garbage')
    assert eval_main(['--checkpoint', str(bad), '--out', str(tmp_path / 'o')]) == 2
    assert 'corrupt' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()
