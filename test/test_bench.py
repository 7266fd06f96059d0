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
depthgate-bench --quick: every section present, well-formed and internally consistent.

Timings themselves are never asserted (machines are noisy); structure and equalities are.
"""
import json
import math

from depthgate_ros.cli.bench import main as bench_main
from depthgate_ros.tools.bench import count_flops, timed_together
import numpy as np
import pytest
import torch


@pytest.mark.xdist_group('processes')          # its node rows: see test_demo.py
def test_quick_bench_writes_valid_json_and_markdown(tmp_path):
    out = tmp_path / 'bench'
    assert bench_main(['--quick', '--out', str(out)]) == 0
    r = json.loads((out / 'bench.json').read_text())
    assert r['quick'] and r['machine']['logical_cores'] >= 1
    g = r['gemm']
    assert g['gflops'] == max(g['sgemm_gflops'], g['conv3x3_gflops']) > 0
    rows = r['model_latency']
    assert {row['loops'] for row in rows} == {0, 1, 2}
    assert {'predicted', 'sensor', 'sensor (hard, sparse)'} <= {row['gate'] for row in rows}
    assert len({tuple(row['size']) for row in rows}) == 2
    assert {row['memory_format'] for row in rows} == {'contiguous', 'channels_last'}
    for row in rows:
        assert 0 < row['median_ms'] <= row['p95_ms'] + 1e-9
        assert row['peak_rss_mib'] is None or row['peak_rss_mib'] > 50    # torch alone
        # achieved GFLOP/s cannot be far above the machine's measured peak
        assert row['gflop'] > 0 and 0 < row['gflops'] < 2 * g['gflops'], row
    # more loops, more work: the counted FLOPs grow with the recurrent loops
    flops = {row['loops']: row['gflop'] for row in rows if row['gate'] == 'predicted'
             and row['memory_format'] == 'contiguous' and row['model'] == 'bundled'
             and row['size'] == r['settings']['size']}
    assert flops[0] < flops[1] < flops[2]
    # the paper-sized head does more work than the bundled one; sparse gating does less
    paper = {row['gate']: row['gflop'] for row in rows if row['model'] == 'paper-sized head'}
    assert paper['predicted'] > flops[2] and paper['predicted (hard, sparse)'] < paper['predicted']
    assert r['onnx']['median_ms'] > 0 and r['onnx']['ratio_vs_eager'] > 0
    assert [d['dilation'] for d in r['dilations']] == [1, 2, 4, 8, 16]
    # sparse gating: same output as dense on both kinds of real gate map
    gates = {g['gate']: g for g in r['gating']}
    assert set(gates) == {'sensor depth', 'sensor depth (hard)', 'hard predicted'}
    assert gates['hard predicted']['branches_per_pixel'] == 1.0
    assert 1.0 <= gates['sensor depth (hard)']['branches_per_pixel'] <= \
        gates['sensor depth']['branches_per_pixel'] <= 5.0
    assert all(g['max_abs_diff'] < 1e-4 for g in r['gating'])
    assert {p['model'] for p in r['peers']} == {'deeplabv3_resnet50',
                                                'deeplabv3_mobilenet_v3_large'}
    # images across processes: 640x480 best effort is lost without the profile, not with it
    transport = {t['profile']: t for t in r['transport']}
    assert transport['large_images']['delivered'] == transport['large_images']['sent'] == 8
    assert transport['Fast DDS default']['delivered'] < 8
    cores = r['machine']['logical_cores']
    runs = [(n['image_size'], n['profile'], n['threads']) for n in r['node']]
    assert runs[0] == ('640x480', True, cores) and ('640x480', False, cores) in runs
    # one run publishes ~/confidence as well (its cost in the node), the others do not
    assert [(n['image_size'], n['threads']) for n in r['node'] if n['confidence']] == \
        [('640x480', cores)]
    for node in r['node']:                       # the node in its own process, over rclpy
        if not node['profile']:
            continue                             # most frames lost: timings are not the point
        assert node['delivered'] == node['sent'] == node['frames'] == 3
        st = node['stage_median_ms']
        assert st['model_ms'] <= st['latency_ms'] and 0 <= node['overhead_fraction'] < 1
        ov = node['overload']
        # every image sent is processed or counted as dropped by the node (2 at the edges)
        assert abs(ov['accounted'] - ov['sent']) <= 2 and ov['processed'] >= 1, ov
    md = (out / 'bench.md').read_text()
    for heading in ('Measured fp32 peak', '## Model', '## Gating module',
                    '## Images across processes', '## Node in its own process', '## Peers'):
        assert heading in md


def test_flops_are_counted_as_by_hand():
    # a 3x3 convolution, 16 -> 32 channels on 20x30, plus a 64x128 @ 128x8 matmul: 2 FLOPs
    # (multiply and add) per weight per output position, inference mode as the bench runs
    conv = torch.nn.Conv2d(16, 32, 3, padding=1, bias=False)
    x, a, b = torch.randn(1, 16, 20, 30), torch.randn(64, 128), torch.randn(128, 8)

    def run():
        with torch.inference_mode():
            conv(x)
            a @ b
    assert count_flops(run) == 2 * 16 * 32 * 9 * 20 * 30 + 2 * 64 * 128 * 8


def test_rows_are_timed_in_turns():
    """One call of each function per round, warm-up rounds first, so drift falls on all alike."""
    calls = []
    out = timed_together({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')},
                         rounds=3, warmup=1)
    assert calls == ['a', 'b'] * 4
    assert out['a']['runs'] == out['b']['runs'] == 3 and out['a']['median_ms'] >= 0


def test_trained_models_side_by_side(tmp_path, capsys):
    """
    --only models: the bundled models, fast through torch, ONNX Runtime fp32 and int8, a peer.

    Input tried: --quick (64 x 96, 2 held-out frames), a random LR-ASPP checkpoint as the
    peer; then a --compare entry without '='.
    """
    from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
    from depthgate_ros.model import build_model, ModelConfig
    from depthgate_ros.model.checkpoint import ModelInfo, save_checkpoint
    torch.manual_seed(0)
    peer = build_model(ModelConfig(architecture='lraspp_mobilenet_v3_large', gate_source='none',
                                   recurrent=False, loops=0))
    path = save_checkpoint(tmp_path / 'peer.pt', peer,
                           ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS))
    out = tmp_path / 'models'
    assert bench_main(['--only', 'models', '--quick', '--compare', f'lraspp={path}',
                       '--out', str(out)]) == 0
    rows = json.loads((out / 'models.json').read_text())['models']
    assert [(r['model'], r['backend']) for r in rows] == [
        ('default', 'eager'), ('fast', 'eager'), ('fast', 'eager contiguous'),
        ('fast', 'onnxruntime fp32'), ('fast', 'onnxruntime int8'), ('lraspp', 'eager')]
    for r in rows:
        assert r['size'] == [64, 96] and r['frames'] == 2
        assert 0 < r['median_ms'] <= r['p95_ms'] and 0 <= r['miou'] <= 1
        assert 0 < r['pre_post_median_ms'] < r['predict_median_ms']
        assert r['postprocess_fraction'] == r['pre_post_median_ms'] / r['predict_median_ms']
    assert rows[0]['loops'] == 1 and rows[5]['loops'] == 0     # street ships with one loop
    assert rows[4]['file_mib'] < 0.5 * rows[3]['file_mib']
    assert math.isnan(rows[5]['delta1'])                 # a peer predicts no depth
    assert rows[2]['miou_vs_fast'] == pytest.approx(0, abs=1e-3)   # only the memory format
    assert rows[0]['gflop'] > 0 and rows[1]['gflop'] > 0
    # every other row against the eager fast model, on the same frames: the full-sample
    # difference is the difference of the two rows' mIoU, inside its own interval
    assert 'miou_vs_fast' not in rows[1]
    for r in rows[:1] + rows[2:]:
        lo, hi = r['miou_vs_fast_ci95']
        assert r['miou_vs_fast'] == pytest.approx(r['miou'] - rows[1]['miou'], abs=1e-9)
        assert lo <= r['miou_vs_fast'] <= hi
    # forward time against the eager fast model's, paired by round
    assert 'time_vs_fast' not in rows[1]
    for r in rows[:1] + rows[2:]:
        assert len(r['samples_ms']) == r['runs'] == len(rows[1]['samples_ms'])
        lo, hi = r['time_vs_fast_ci95']
        assert 0 < lo <= r['time_vs_fast'] <= hi
    assert '| fast | onnxruntime int8 | 64x96 |' in (out / 'models.md').read_text()
    # --no-onnx leaves out the export and its two rows, nothing else
    assert bench_main(['--only', 'models', '--quick', '--no-onnx', '--compare', f'lraspp={path}',
                       '--out', str(tmp_path / 'no_onnx')]) == 0
    rows = json.loads((tmp_path / 'no_onnx' / 'models.json').read_text())['models']
    assert [(r['model'], r['backend']) for r in rows] == [
        ('default', 'eager'), ('fast', 'eager'), ('fast', 'eager contiguous'), ('lraspp', 'eager')]
    assert bench_main(['--only', 'models', '--quick', '--compare', 'lraspp', '--out',
                       str(out)]) == 2
    assert '--compare takes NAME=CHECKPOINT' in capsys.readouterr().err


def test_paired_time_ratio_cancels_the_machines_drift():
    """
    A row 1.25x the fast model's in every round, while the machine slows 3x across the rounds.

    Input tried: 9 rounds, one of them an outlier (a stall of 40 ms on the row only).
    """
    from depthgate_ros.tools.bench_models import paired_time_ratio
    base = np.array([10.0, 11, 12, 15, 18, 21, 24, 27, 30])        # the machine drifting
    row = 1.25 * base
    row[4] += 40.0                                                  # one stalled call
    ratio, (lo, hi) = paired_time_ratio(row, base)
    assert ratio == 1.25                  # the median of 8 x 1.25 and one outlier
    assert lo == hi == 1.25
    # the ratio of the two rows' own medians is not: the stall moves the row's median to
    # another round's call, made while the machine was slower
    assert np.median(row) / np.median(base) == pytest.approx(26.25 / 18)


def test_rows_timed_in_turns_do_not_always_follow_the_same_row(monkeypatch):
    """
    A call after the cache-evicting row is slower; the shuffled order shares that out.

    Input tried: three rows on a fake clock, `heavy` (10 ms) and two identical 1 ms rows that
    take 3 ms when they run right after `heavy`, 60 rounds. In the fixed order heavy, a, b the
    row `a` would be measured 3x `b`.
    """
    import depthgate_ros.tools.bench as bench
    clock = {'now': 0.0, 'last': None}
    calls = []

    def row(name, ms):
        def fn():
            penalty = 2.0 if name != 'heavy' and clock['last'] == 'heavy' else 0.0
            clock['now'] += (ms + penalty) / 1e3
            clock['last'] = name
            calls.append(name)
        return fn
    monkeypatch.setattr(bench, 'time', type('Clock', (), {
        'perf_counter': staticmethod(lambda: clock['now'])}))
    rounds = 60
    t = timed_together({'heavy': row('heavy', 10.0), 'a': row('a', 1.0), 'b': row('b', 1.0)},
                       rounds, warmup=1, samples=True)
    timed_calls = calls[3:]                                  # after the warm-up round
    orders = {tuple(timed_calls[3 * i:3 * i + 3]) for i in range(rounds)}
    assert all(sorted(o) == ['a', 'b', 'heavy'] for o in orders)   # each row once per round
    assert len(orders) == 6                                  # every order occurs
    a, b = np.array(t['a']['samples_ms']), np.array(t['b']['samples_ms'])
    assert t['heavy']['median_ms'] == pytest.approx(10.0)
    assert t['a']['median_ms'] == t['b']['median_ms'] == pytest.approx(1.0)
    assert np.median(a / b) == pytest.approx(1.0)
    # both rows paid after `heavy` about a third of the time, neither always
    assert 0.15 < np.mean(a > 1.5) < 0.5 and 0.15 < np.mean(b > 1.5) < 0.5


def test_pre_post_row_runs_the_network_once_and_gives_the_same_outputs(make_model):
    """
    The pre/post column times predict around a replayed model: it must not run the network.

    Input tried: a random 48 x 80 frame through a small model, predict twice around the replay.
    """
    from depthgate_ros.tools.bench_models import _pre_post
    from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
    from depthgate_ros.inference import Predictor
    from depthgate_ros.model.checkpoint import ModelInfo
    model = make_model(seed=2).eval()
    predictor = Predictor(model, ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS), device='cpu')
    rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    calls = []
    real = model.iter_loops
    model.iter_loops = lambda *a, **k: calls.append(1) or real(*a, **k)
    replayed = _pre_post(predictor)
    first, second = replayed.predict(rgb), replayed.predict(rgb)
    direct = predictor.predict(rgb)
    assert len(calls) == 2           # once for the replay's recording, once for `direct`
    for p in (first, second):
        np.testing.assert_array_equal(p.labels, direct.labels)
        np.testing.assert_array_equal(p.depth, direct.depth)
    assert predictor.model is model  # the original Predictor keeps its own model


@pytest.mark.xdist_group('processes')
def test_camera_ring_bench_compares_one_node_with_a_node_per_camera(tmp_path, tiny_checkpoint):
    # tried: 2 cameras at 5 Hz for 3 s, 640x480, the tiny model (fast: nothing is dropped)
    out = tmp_path / 'ring'
    assert bench_main(['--only', 'cameras', '--cameras', '2', '--camera-rate', '5',
                       '--camera-seconds', '3', '--model', str(tiny_checkpoint),
                       '--out', str(out)]) == 0
    r = json.loads((out / 'cameras.json').read_text())['cameras']
    assert r['cameras'] == ['front', 'left'] and r['size'] == '640x480'
    for key, nodes in (('one_node', 1), ('separate_nodes', 2), ('separate_nodes_split', 2)):
        row = r[key]
        assert row['nodes'] == nodes and set(row['per_camera']) == {'front', 'left'}
        for cam in row['per_camera'].values():
            assert cam['sent'] == 15 and 1 <= cam['processed'] <= 15
            assert cam['model_ms_median'] <= cam['latency_p50_ms']
        assert row['processed_hz'] == pytest.approx(sum(
            c['processed_hz'] for c in row['per_camera'].values()))
        assert 0 <= row['spread'] <= 1
    # one process holds one torch and one model, two hold two
    assert r['rss_ratio'] == pytest.approx(
        r['one_node']['rss_median_mib'] / r['separate_nodes']['rss_median_mib']) and \
        r['rss_ratio'] < 0.8
    assert '## 2 cameras, 640x480 at 5 Hz each: one node or 2' in (out / 'cameras.md').read_text()
