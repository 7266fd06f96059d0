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
Metrics against independent implementations.

cityscapesscripts' own evaluation for IoU and iIoU, hand-computed values for depth.
"""
import math

from depthgate_ros.data.labels import CITYSCAPES_NAMES
from depthgate_ros.data.synthetic import Camera, render_frame
from depthgate_ros.metrics import cityscapes_avg_instance_size, DepthMetric, SegmentationMetric
import numpy as np
import pytest
import torch

SMALL = Camera(width=192, height=96, fx=210.0, fy=210.0)


def _corrupt(labels, rng):
    """Make a plausible wrong prediction: shifted, blocks relabelled and things eroded."""
    pred = np.roll(labels, rng.integers(-3, 4), axis=1).copy()
    for _ in range(12):
        r, c = rng.integers(0, labels.shape[0] - 12), rng.integers(0, labels.shape[1] - 20)
        pred[r:r + rng.integers(4, 12), c:c + rng.integers(5, 20)] = rng.integers(0, 19)
    pred[pred == 255] = 0
    return pred.astype(np.uint8)


@pytest.fixture(scope='module')
def pairs():
    rng = np.random.default_rng(0)
    out = []
    for seed in range(4):
        f = render_frame(seed, SMALL)
        gt = f.labels.copy()
        gt[:4] = 255                                # an ignored band, as Cityscapes has
        out.append((_corrupt(gt, rng), gt, f.instances))
    return out


def test_iou_and_iiou_equal_cityscapesscripts(pairs, tmp_path, monkeypatch):
    from conftest import cityscapes_reference
    ours = SegmentationMetric(19, avg_instance_size=cityscapes_avg_instance_size(
        CITYSCAPES_NAMES))
    for pred, gt, inst in pairs:
        ours.update(pred, gt, np.where(gt == 255, 0, inst))
    ref = cityscapes_reference(pairs, tmp_path, monkeypatch)
    got = ours.compute()
    compared = 0
    for t, name in enumerate(CITYSCAPES_NAMES):
        r, o = ref['classScores'][name], got['iou'][t]
        assert (math.isnan(r) and math.isnan(o)) or abs(r - o) < 1e-6, name
        compared += not math.isnan(r)
    assert compared >= 8
    assert abs(ref['averageScoreClasses'] - got['miou']) < 1e-6
    for t, value in got['iiou'].items():
        r = ref['classInstScores'][CITYSCAPES_NAMES[t]]
        assert (math.isnan(r) and math.isnan(value)) or abs(r - value) < 1e-6
    assert abs(ref['averageScoreInstClasses'] - got['miiou']) < 1e-6
    assert 0 < got['miiou'] < 1 and 0 < got['miou'] < 1


def test_streaming_equals_one_shot(pairs):
    streamed, once = SegmentationMetric(19), SegmentationMetric(19)
    for pred, gt, _ in pairs:
        streamed.update(pred, gt)
    once.update(np.concatenate([p for p, _, _ in pairs]),
                np.concatenate([g for _, g, _ in pairs]))
    assert np.array_equal(streamed.confusion, once.confusion)


def test_iou_by_hand_and_pixel_accuracy():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    m = SegmentationMetric(3)
    m.update(torch.from_numpy(pred), torch.from_numpy(gt))
    r = m.compute()
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1, fn 1 -> 1/2; class 2: tp 1,
    # fp 1 (the ignored pixel does not count), fn 1 -> 1/3
    assert r['iou'] == pytest.approx([1 / 3, 1 / 2, 1 / 3])
    assert r['miou'] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert r['pixel_accuracy'] == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match='outside'):
        m.update(np.array([5]), np.array([0]))


def test_recall_and_precision_by_hand():
    # class 0 is missed on two of its three pixels, class 1 spills onto them; class 2 is
    # never in the ground truth (no recall) and predicted once (precision 0)
    gt = np.array([0, 0, 0, 1, 1, 255])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = SegmentationMetric(3)
    m.update(pred, gt)
    r = m.compute()
    assert r['recall'][:2] == pytest.approx([1 / 3, 1 / 2]) and np.isnan(r['recall'][2])
    assert r['precision'] == pytest.approx([1, 1 / 3, 0])
    assert r['iou'] == pytest.approx([1 / 3, 1 / 4, 0])


def test_depth_metrics_by_hand():
    gt = np.array([1.0, 2.0, 4.0, np.nan, 0.0, 10.0])
    pred = np.array([1.2, 2.0, 2.0, 5.0, 3.0, 13.0])
    m = DepthMetric()
    m.update(pred[:3], gt[:3])
    m.update(pred[3:], gt[3:])
    r = m.compute()
    p, g = np.array([1.2, 2.0, 2.0, 13.0]), np.array([1.0, 2.0, 4.0, 10.0])
    # ratios 1.2, 1, 2, 1.3 -> delta1 2/4, delta2 (<1.5625) 3/4, delta3 (<1.953) 3/4
    assert (r['delta1'], r['delta2'], r['delta3']) == (0.5, 0.75, 0.75)
    assert r['abs_rel'] == pytest.approx((0.2 + 0 + 0.5 + 0.3) / 4)
    assert r['sq_rel'] == pytest.approx((0.04 / 1 + 0 + 4 / 4 + 9 / 10) / 4)
    assert r['rmse'] == pytest.approx(math.sqrt((0.04 + 0 + 4 + 9) / 4))
    assert r['rmse_log'] == pytest.approx(math.sqrt(np.mean(np.log(p / g) ** 2)))
    assert r['log10'] == pytest.approx(np.mean(np.abs(np.log10(p / g))))
    assert r['pixels'] == 4
    with pytest.raises(ValueError, match='positive'):
        m.update(np.array([0.0]), np.array([1.0]))
    assert math.isnan(DepthMetric().compute()['rmse'])


def test_depth_cap_equals_metrics_on_the_kept_pixels():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 500, 1000)
    pred = gt * rng.uniform(0.7, 1.4, 1000)
    capped, kept = DepthMetric(max_depth=80.0), DepthMetric()
    capped.update(pred, gt)
    kept.update(pred[gt <= 80], gt[gt <= 80])
    assert capped.compute() == pytest.approx(kept.compute())
    assert capped.compute()['pixels'] == int((gt <= 80).sum()) < 1000
    with pytest.raises(ValueError, match='positive'):
        DepthMetric(max_depth=0)


def _ddp_worker(rank, world, port, pairs, result):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world)
    seg, depth = SegmentationMetric(19), DepthMetric()
    for pred, gt, _ in pairs[rank::world]:
        seg.update(pred, gt)
        depth.update(np.full(gt.shape, 5.0), np.where(gt == 0, 4.0, np.nan))
    seg.all_reduce()
    depth.all_reduce()
    if rank == 0:
        result.put((seg.confusion, depth.compute()))
    dist.destroy_process_group()


def test_all_reduce_across_two_processes(pairs):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = mp.get_context('spawn')
    result = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, pairs, result)) for r in (0, 1)]
    for p in procs:
        p.start()
    confusion, depth = result.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    single, single_depth = SegmentationMetric(19), DepthMetric()
    for pred, gt, _ in pairs:
        single.update(pred, gt)
        single_depth.update(np.full(gt.shape, 5.0), np.where(gt == 0, 4.0, np.nan))
    assert np.array_equal(confusion, single.confusion)
    assert depth == pytest.approx(single_depth.compute())


def test_latency_percentiles_by_hand():
    from depthgate_ros.metrics import percentiles
    # linear interpolation between order statistics; NaN (a frame never answered) left out
    got = percentiles([40.0, 10.0, float('nan'), 30.0, 20.0])
    assert got == {'p50': 25.0, 'p95': pytest.approx(38.5)}
    assert all(v != v for v in percentiles([]).values())             # NaN, not an error
    assert percentiles([7.0], (50,)) == {'p50': 7.0}
