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

"""Class score offsets: the fit, the fold into the classifiers, and packing with them."""
import re

from conftest import camvid_tree
from depthgate_ros.calibration import fit_offsets, mean_iou
from depthgate_ros.cli.pack_model import main as pack
from depthgate_ros.inference import Predictor
from depthgate_ros.metrics import SegmentationMetric
from depthgate_ros.model.checkpoint import load_checkpoint
import numpy as np
import pytest
import torch


def _biased_scores(n=30000, bias=1.5, seed=0):
    """Two classes, the second rare (8%), its score raised by `bias` as a class weight does."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.08).astype(np.int64)
    scores = 2.0 * np.eye(2)[y] + rng.normal(0, 1, (n, 2))
    scores[:, 1] += bias
    return scores.astype(np.float32), y


def _miou_by_metric(scores, y, offset_1):
    """Score the labels class 1's offset gives with SegmentationMetric (the reference)."""
    metric = SegmentationMetric(2)
    pred = (scores[:, 1] + offset_1 > scores[:, 0]).astype(np.int64)
    metric.update(pred[None], y[None])
    return float(np.nanmean(metric.compute()['iou']))


def test_fit_finds_the_grid_offset_a_brute_force_search_finds():
    scores, y = _biased_scores()
    offsets, before, after = fit_offsets(scores, y, np.arange(2), 2, limit=3.0, step=0.25)
    # only the difference matters with two classes: search it directly, scored independently
    grid = np.arange(-3.0, 3.001, 0.25)
    by_metric = [_miou_by_metric(scores, y, d) for d in grid]
    assert before == pytest.approx(_miou_by_metric(scores, y, 0.0), abs=1e-9)
    assert after == pytest.approx(max(by_metric), abs=1e-9)
    assert after > before + 0.05            # the raised rare class cost IoU
    assert _miou_by_metric(scores, y, offsets[1] - offsets[0]) == pytest.approx(after)


def test_fit_undoes_a_raise_of_one_class():
    # the same frames' scores with and without the rare class raised: the fitted offsets
    # differ by the raise (within a grid step); where mIoU's best threshold lies on
    # unraised scores is the data's, not the fit's
    raised, y = _biased_scores(bias=1.5)
    plain, _ = _biased_scores(bias=0.0)
    d_raised, d_plain = (o[1] - o[0] for o in (fit_offsets(raised, y, np.arange(2), 2)[0],
                                               fit_offsets(plain, y, np.arange(2), 2)[0]))
    assert d_raised - d_plain == pytest.approx(-1.5, abs=0.25)


def test_mean_iou_matches_the_metric_with_a_column_for_no_class():
    # 3 scored classes; predictions may be id 3: a model class no dataset class covers
    rng = np.random.default_rng(1)
    t = rng.integers(0, 3, 5000)
    p = np.where(rng.random(5000) < 0.6, t, rng.integers(0, 4, 5000))
    metric = SegmentationMetric(4)
    metric.update(p[None], t[None])
    expect = float(np.nanmean(metric.compute()['iou'][:3]))
    assert mean_iou(torch.from_numpy(p), torch.from_numpy(t), 3) == pytest.approx(expect)
    # a class predicted but never true counts as 0, as depthgate-eval counts it
    t_no2 = np.where(t == 2, 0, t)
    metric = SegmentationMetric(4)
    metric.update(p[None], t_no2[None])
    expect = float(np.nanmean(metric.compute()['iou'][:3]))
    assert mean_iou(torch.from_numpy(p), torch.from_numpy(t_no2), 3) == pytest.approx(expect)


@pytest.mark.parametrize('changes', [
    {},                                                          # the paper's classifier
    {'output_stride': 32, 'detail_channels': 16, 'fine_channels': 4},   # detail scores added
])
def test_offsets_move_every_loops_scores_by_exactly_themselves(make_model, changes):
    model = make_model(seed=3, **changes).eval()
    x = torch.randn(1, 3, 64, 96)
    offsets = torch.linspace(-2, 2, 19)
    with torch.no_grad():
        before = [o['seg'] for o in model(x, loops=2)]
        model.offset_class_scores(offsets)
        after = [o['seg'] for o in model(x, loops=2)]
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b + offsets.view(1, -1, 1, 1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='11 offsets for 19 classes'):
        model.offset_class_scores(torch.zeros(11))


def test_predictor_gives_scores_only_when_named(tiny_checkpoint):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device='cpu')
    rgb = np.random.default_rng(0).integers(0, 256, (60, 90, 3), np.uint8)
    assert predictor.predict(rgb).scores is None
    p = predictor.predict(rgb, outputs=('scores',))
    assert p.scores.shape == (19, 60, 90)
    # the labels are the argmax of the scores handed out (ties aside)
    assert (p.scores.argmax(0) == p.labels).mean() > 0.999


def test_packing_with_calibration_folds_the_fitted_offsets(tiny_checkpoint, tmp_path, capsys):
    tree = camvid_tree(tmp_path / 'camvid', n=2)
    dst = tmp_path / 'calibrated.pt'
    assert pack([str(tiny_checkpoint), str(dst), '--loops', '1', '--calibrate', 'camvid',
                 '--calibrate-root', str(tree), '--calibrate-pixels', '800']) == 0
    out = capsys.readouterr().out
    before, after = (float(v) for v in re.search(r'mIoU ([\d.]+) -> ([\d.]+)', out).groups())
    assert after >= before
    src, _, _ = load_checkpoint(tiny_checkpoint)
    packed, info, _ = load_checkpoint(dst)
    offsets = info.provenance['class_offsets']
    assert list(offsets) == list(info.class_names)
    assert any(offsets.values())        # else the fold below would check nothing
    assert info.provenance['calibrated_on'].startswith('camvid train')
    # packed again: the first packing is kept
    again = tmp_path / 'again.pt'
    assert pack([str(dst), str(again), '--calibrate', 'camvid', '--calibrate-root', str(tree),
                 '--calibrate-pixels', '800', '--note', 'second']) == 0
    _, info2, _ = load_checkpoint(again)
    assert info2.provenance['earlier_packing']['packed_from'] == str(tiny_checkpoint)
    assert info2.provenance['packed_from'] == str(dst) and info2.provenance['note'] == 'second'
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = src(x, loops=1)[-1]['seg'], packed(x, loops=1)[-1]['seg']
    shift = torch.tensor([offsets[n] for n in info.class_names]).view(1, -1, 1, 1)
    torch.testing.assert_close(b, a + shift, rtol=0.02, atol=0.02)      # float16 weights
    # a split that is not there: a clear error, nothing written
    bad = tmp_path / 'bad.pt'
    assert pack([str(tiny_checkpoint), str(bad), '--calibrate', 'camvid',
                 '--calibrate-root', str(tmp_path / 'none')]) == 2
    assert 'none' in capsys.readouterr().err and not bad.exists()
