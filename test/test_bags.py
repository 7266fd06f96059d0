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

"""Rosbag replay evaluation on real rosbag2 files (sqlite3 and mcap)."""
import json
import os
from pathlib import Path
import shutil
import stat
import time

from conftest import node_on_bag_topics, start_node
from depthgate_ros.cli.bag_eval import main as bag_eval
from depthgate_ros.cli.make_bag import main as make_bag_main
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.data.sensors import measure, sensor_by_name
from depthgate_ros.data.synthetic import Camera, render_sequence
from depthgate_ros.inference import Predictor
from depthgate_ros.metrics import DepthMetric, SegmentationMetric
from depthgate_ros.model import DepthGatedNet, ModelConfig
from depthgate_ros.model.checkpoint import ModelInfo, save_checkpoint
from depthgate_ros.node.image_codec import image_to_array
from depthgate_ros.options import PredictorOptions
from depthgate_ros.tools.bags import (BagWriter, COMPRESSED, header, IMAGE, image_msg, open_bag,
                                      read_topics, TYPESTORE)
from depthgate_ros.tools.make_bag import make_bag, START_NS
from depthgate_ros.tools.player import Player
import numpy as np
import pytest
from std_msgs.msg import Header
import torch
from transport_peer import compressed, compressed_depth

SIZE = (48, 96)


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    torch.manual_seed(1)
    m = DepthGatedNet(ModelConfig(channels=16, depth_channels=(8, 8), loops=1))
    return save_checkpoint(tmp_path_factory.mktemp('m') / 'tiny.pt', m,
                           ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS))


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('bags')
    return {s: make_bag(root / s, frames=5, size=SIZE, storage=s) for s in ('sqlite3', 'mcap')}


def _eval(bag, out, model, *extra):
    return bag_eval([str(bag), '--out', str(out), '--checkpoint', str(model), '--device',
                     'cpu', *extra])


def test_both_storages_give_identical_metrics(bags, model_path, tmp_path):
    reports = {}
    for storage, bag in bags.items():
        assert _eval(bag, tmp_path / storage, model_path, '--write-bag') == 0
        reports[storage] = json.loads((tmp_path / storage / 'report.json').read_text())
    a, b = reports['sqlite3'], reports['mcap']
    for key in ('loop0', 'loop1', 'monocular_depth', 'sensor_vs_predicted_gate_agreement'):
        assert a[key] == b[key], key
    assert a['frames_evaluated'] == 5 and a['frames_with_sensor_depth'] == 5
    assert (tmp_path / 'sqlite3' / 'report.md').read_text().startswith('# Bag evaluation')
    assert (tmp_path / 'sqlite3' / 'latency_histogram.png').stat().st_size > 1000
    assert len(list((tmp_path / 'sqlite3' / 'panels').glob('*.png'))) == 5
    # the output bag holds the node's outputs, stamped like the inputs
    out = open_bag(tmp_path / 'sqlite3' / 'outputs')
    counts = {c.topic: c.msgcount for c in out.connections}
    assert counts == {'/depthgate/labels': 5, '/depthgate/labels_color': 5,
                      '/depthgate/depth': 5}
    stamps = sorted(t for _, t, _ in out.messages())
    assert stamps[0] == START_NS
    out.close()


def test_bag_metrics_equal_direct_predictor_metrics(bags, model_path, tmp_path):
    assert _eval(bags['sqlite3'], tmp_path / 'r', model_path) == 0
    report = json.loads((tmp_path / 'r' / 'report.json').read_text())
    cam = Camera(width=SIZE[1], height=SIZE[0], fx=560.0 * SIZE[1] / 512,
                 fy=560.0 * SIZE[1] / 512)
    # the tool's own options (channels last by default): the same arithmetic, label for label
    predictor = Predictor.from_checkpoint(model_path,
                                          **PredictorOptions(device='cpu').predictor_kwargs())
    seg = [SegmentationMetric(19) for _ in range(2)]
    mono = DepthMetric()
    stereo = sensor_by_name('stereo')           # what the bag records by default
    same = pixels = 0
    for i, f in enumerate(render_sequence(7, 5, cam)):
        depth = measure(stereo, f.depth, cam.fx, np.random.default_rng((7, i)), f.rgb)
        preds = predictor.predict_loops(f.rgb, depth)
        for loop, p in enumerate(preds):
            seg[loop].update(p.labels, f.labels)
        monocular = predictor.predict(f.rgb, gate='predicted')
        mono.update(monocular.depth, depth)
        same += int((monocular.labels == preds[-1].labels).sum())    # agreement by hand
        pixels += monocular.labels.size
    for loop in (0, 1):
        assert report[f'loop{loop}']['miou'] == pytest.approx(seg[loop].compute()['miou'],
                                                              abs=1e-12)
    assert report['monocular_depth']['abs_rel'] == pytest.approx(mono.compute()['abs_rel'],
                                                                 rel=1e-9)
    agreement = report['sensor_vs_predicted_gate_agreement']
    assert agreement == pytest.approx(same / pixels, abs=1e-12)
    assert same < pixels                        # the sensor's gate changed some labels


def test_without_labels_still_depth_metrics_and_latency(model_path, tmp_path):
    bag = make_bag(tmp_path / 'b', frames=3, size=SIZE, depth_encoding='16UC1')
    # a bag with no label topic at all (copied from one that has it, raw CDR unchanged)
    src = open_bag(bag)
    nolabel = tmp_path / 'nolabel'
    with BagWriter(nolabel) as w:
        keep = [c for c in src.connections if c.topic != '/camera/labels']
        for c in keep:
            w.add(c.topic, c.msgtype)
        for c, t, raw in src.messages(connections=keep):
            w.write_raw(c.topic, t, raw)
    src.close()
    # umask 027: the report folder gets mkdir()'s mode (0750), not mkdtemp's private 0700
    old = os.umask(0o027)
    try:
        assert _eval(nolabel, tmp_path / 'r2', model_path) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / 'r2').stat().st_mode) == 0o750
    r = json.loads((tmp_path / 'r2' / 'report.json').read_text())
    assert 'loop0' not in r and r['monocular_depth']['pixels'] > 0
    assert r['latency_ms']['p50'] > 0 and r['frames_evaluated'] == 3


def test_truncated_bag_stops_cleanly(bags, model_path, tmp_path):
    for storage, bag in bags.items():
        broken = tmp_path / f'broken_{storage}'
        shutil.copytree(bag, broken)
        data = next(p for p in broken.iterdir() if p.suffix in ('.db3', '.mcap'))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
        out = tmp_path / f'out_{storage}'
        assert _eval(broken, out, model_path) == 2
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f'.out_{storage}')]


def test_unsupported_encoding_and_missing_topic(model_path, tmp_path, capsys):
    bag = tmp_path / 'yuv'
    with BagWriter(bag) as w:
        w.add('/cam/image', IMAGE)
        for i in range(2):
            hdr = header(START_NS + i, 'cam')
            msg = image_msg(np.zeros((4, 8), np.uint16), '16UC1', hdr)
            msg.encoding = 'yuv422'
            w.write('/cam/image', START_NS + i, msg)
    assert _eval(bag, tmp_path / 'r', model_path, '--image', '/cam/image') == 2
    err = capsys.readouterr().err
    assert "encoding 'yuv422' is not a colour encoding" in err and 'rgb8' in err
    assert not (tmp_path / 'r').exists()
    assert _eval(bag, tmp_path / 'r', model_path) == 2          # no colour topic to pick
    assert 'no image topic found' in capsys.readouterr().err
    assert _eval(bag, tmp_path / 'r', model_path, '--depth', '/nope') == 2
    err = capsys.readouterr().err
    assert "'/nope' is not in the bag" in err and '/cam/image' in err
    assert not (tmp_path / 'r').exists()


def test_make_bag_cli_and_listing(tmp_path, capsys):
    assert make_bag_main([str(tmp_path / 'b'), '--frames', '2', '--size', '32', '64',
                          '--storage', 'mcap', '--depth-frames', '1']) == 0
    assert bag_eval([str(tmp_path / 'b'), '--list']) == 0
    out = capsys.readouterr().out
    assert '/camera/image_raw  [sensor_msgs/msg/Image]  2 msgs' in out
    assert '/camera/depth/image_raw  [sensor_msgs/msg/Image]  1 msgs' in out
    assert make_bag_main([str(tmp_path / 'b')]) == 2            # never overwrites
    capsys.readouterr()
    # a drive longer than the street: one line, no traceback, nothing written
    assert make_bag_main([str(tmp_path / 'c'), '--frames', '300', '--fps', '10']) == 2
    assert 'lengthen the street' in capsys.readouterr().err and not (tmp_path / 'c').exists()


def test_realtime_against_the_node(model_path, tmp_path):
    bag = make_bag(tmp_path / 'b', frames=10, size=SIZE, fps=10.0)
    h = Player()
    try:
        node = node_on_bag_topics(h, model_path)
        original = node.perception.predictor.predict

        def slow(*a, **k):                      # slower than the 10 Hz input: drops happen
            time.sleep(0.15)
            return original(*a, **k)
        node.perception.predictor.predict = slow
        assert bag_eval([str(bag), '--out', str(tmp_path / 'rt'), '--realtime', '--wait',
                         '3']) == 0
    finally:
        h.close()
    r = json.loads((tmp_path / 'rt' / 'report.json').read_text())
    assert r['frames_sent'] == 10
    assert r['frames_received'] + r['frames_dropped'] == 10
    assert 2 <= r['frames_received'] < 10
    assert len(r['latencies_ms']) == r['frames_received']
    # each measured from its own publish to its own ~/frame_info: never below the model's
    # stubbed 150 ms (a lower bound from the stub, not a speed limit)
    assert all(x >= 150 for x in r['latencies_ms'])


def test_pairing_follows_sync_slop_and_depth_timeout(model_path, tmp_path):
    # Images every 200 ms; depth stamped and recorded so that each frame's pairing is known:
    # 0: +20 ms, 1: -30 ms (paired); 2: +70 ms (only with a 0.1 s slop); 3: none;
    # 4: on time but recorded 0.8 s late (only with a 1 s depth timeout); 5-7: on time.
    bag = tmp_path / 'offsets'
    rng = np.random.default_rng(0)
    depth = {0: (20, 0), 1: (-30, 0), 2: (70, 0), 4: (0, 800), 5: (0, 0), 6: (0, 0), 7: (0, 0)}
    with BagWriter(bag) as w:
        w.add('/cam/image', IMAGE)
        w.add('/cam/depth', IMAGE)
        for i in range(8):
            t = START_NS + i * 200_000_000
            rgb = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
            w.write('/cam/image', t, image_msg(rgb, 'rgb8', header(t, 'cam')))
            if i in depth:
                offset_ms, late_ms = depth[i]
                stamp = t + offset_ms * 1_000_000
                w.write('/cam/depth', t + late_ms * 1_000_000, image_msg(
                    np.full((32, 64), 8.0, np.float32), '32FC1', header(stamp, 'cam')))
    cases = (((), 5), (('--sync-slop', '0.1'), 6), (('--depth-timeout', '1.0'), 6),
             (('--sync-slop', '0.1', '--depth-timeout', '1.0'), 7))
    for k, (extra, paired) in enumerate(cases):
        out = tmp_path / f'report{k}'
        assert _eval(bag, out, model_path, *extra) == 0
        report = json.loads((out / 'report.json').read_text())
        assert report['frames_evaluated'] == 8
        assert report['frames_with_sensor_depth'] == paired, extra


def _compressed_copy(raw: Path, out: Path, codec: str) -> Path:
    """Copy the raw bag as robots record it: `compressed` image, `compressedDepth` depth."""
    renamed = {'/camera/image_raw': '/camera/image_raw/compressed',
               '/camera/depth/image_raw': '/camera/depth/image_raw/compressedDepth'}
    reader = open_bag(raw)
    try:
        with BagWriter(out, 'mcap') as writer:
            for c in reader.connections:
                writer.add(renamed.get(c.topic, c.topic),
                           COMPRESSED if c.topic in renamed else c.msgtype)
            for topic, t, msg in read_topics(reader, [c.topic for c in reader.connections]):
                if topic in renamed:
                    array = image_to_array(msg)
                    peer = compressed(array, Header(), codec) if msg.encoding == 'rgb8' \
                        else compressed_depth(array, msg.encoding, Header())
                    msg = TYPESTORE.types[COMPRESSED](header=msg.header, format=peer.format,
                                                      data=np.frombuffer(peer.data, np.uint8))
                writer.write(renamed.get(topic, topic), t, msg)
    finally:
        reader.close()
    return out


def _labels(report_dir: Path) -> list:
    reader = open_bag(report_dir / 'outputs')
    try:
        return [image_to_array(m) for _, _, m in read_topics(reader, ['/depthgate/labels'])]
    finally:
        reader.close()


def test_compressed_topics_give_the_raw_labels(model_path, tmp_path):
    raw = make_bag(tmp_path / 'raw', frames=4, size=SIZE, depth_encoding='16UC1')
    reports = {}
    for name, bag in (('raw', raw),
                      ('png', _compressed_copy(raw, tmp_path / 'png', 'png')),
                      ('jpeg', _compressed_copy(raw, tmp_path / 'jpeg', 'jpeg'))):
        assert _eval(bag, tmp_path / f'out_{name}', model_path, '--write-bag') == 0
        report = json.loads((tmp_path / f'out_{name}' / 'report.json').read_text())
        reports[name] = (report, _labels(tmp_path / f'out_{name}'))
    (raw_report, raw_labels), (png_report, png_labels) = reports['raw'], reports['png']
    # found by type and format, depth decoded from compressedDepth (16UC1: lossless)
    assert png_report['topics']['image'] == '/camera/image_raw/compressed'
    assert png_report['topics']['depth'] == '/camera/depth/image_raw/compressedDepth'
    assert png_report['frames_with_sensor_depth'] == raw_report['frames_with_sensor_depth'] == 4
    assert png_report['monocular_depth'] == raw_report['monocular_depth']
    assert len(png_labels) == len(raw_labels) == 4
    for a, b in zip(png_labels, raw_labels):
        np.testing.assert_array_equal(a, b)
    # jpeg changes pixels: labels still agree on at least 90% of them
    jpeg_report, jpeg_labels = reports['jpeg']
    agree = np.mean([np.mean(a == b) for a, b in zip(jpeg_labels, raw_labels)])
    print(f'jpeg vs raw label agreement {agree:.4f}')
    assert agree >= 0.9 and jpeg_report['frames_with_sensor_depth'] == 4


def test_realtime_plays_compressed_topics_into_a_compressed_node(model_path, tmp_path):
    raw = make_bag(tmp_path / 'raw', frames=4, size=SIZE, fps=5.0, depth_encoding='16UC1')
    bag = _compressed_copy(raw, tmp_path / 'png', 'png')
    h = Player()
    try:
        # the node's base topics; image_transport's suffixes are its own business
        node = node_on_bag_topics(h, model_path, image_transport='compressed',
                                  depth_transport='compressedDepth')
        assert bag_eval([str(bag), '--out', str(tmp_path / 'rt'), '--realtime', '--wait',
                         '5']) == 0
        stats = node.perception.stats
    finally:
        h.close()
    r = json.loads((tmp_path / 'rt' / 'report.json').read_text())
    assert r['topics']['image'] == '/camera/image_raw/compressed'
    assert r['frames_sent'] == 4 and r['frames_received'] == 4      # 5 Hz: time for each
    assert stats['errors'] == 0 and stats['depth_errors'] == 0


def test_a_camera_ring_recording_is_evaluated_per_camera(model_path, tmp_path):
    # tried: two cameras (front, left) in one recording, offline then realtime into one node
    # serving both; the reference for each camera is the tool run on its topics alone
    bag = make_bag(tmp_path / 'ring', frames=4, size=SIZE, fps=5.0, cameras=('front', 'left'))
    assert _eval(bag, tmp_path / 'both', model_path, '--cameras', '/front', '/left',
                 '--write-bag') == 0
    ring = json.loads((tmp_path / 'both' / 'report.json').read_text())
    assert set(ring['cameras']) == {'front', 'left'}
    for name, r in ring['cameras'].items():
        assert r['topics']['image'] == f'/{name}/image_raw'
        assert r['topics']['labels'] == f'/{name}/labels'
        alone = tmp_path / f'alone_{name}'
        assert _eval(bag, alone, model_path, *(f'--{role}={topic}' for role, topic in (
            ('image', f'/{name}/image_raw'), ('depth', f'/{name}/depth/image_raw'),
            ('disparity', f'/{name}/disparity'), ('camera-info', f'/{name}/camera_info'),
            ('labels', f'/{name}/labels')))) == 0
        single = json.loads((alone / 'report.json').read_text())
        for key in ('loop0', 'loop1', 'monocular_depth', 'frames_evaluated'):
            assert r[key] == single[key], (name, key)
        assert len(list((tmp_path / 'both' / name / 'panels').glob('*.png'))) == 4
        assert {c.topic for c in open_bag(tmp_path / 'both' / 'outputs' / name).connections} \
            == {'/depthgate/labels', '/depthgate/labels_color', '/depthgate/depth'}
    # the cameras look different ways: their scores differ
    assert ring['cameras']['front']['loop0'] != ring['cameras']['left']['loop0']
    md = (tmp_path / 'both' / 'report.md').read_text()
    assert '## Camera front' in md and '## Camera left' in md
    # a topic flag names one topic: refused beside --cameras (a usage error, exit 2)
    with pytest.raises(SystemExit) as stop:
        _eval(bag, tmp_path / 'bad', model_path, '--cameras', '/front', '--image',
              '/front/image_raw')
    assert stop.value.code == 2 and not (tmp_path / 'bad').exists()

    h = Player()
    try:
        remaps = ['--ros-args'] + [a for name in ('front', 'left') for role, topic in (
            ('image', 'image_raw'), ('depth', 'depth/image_raw'),
            ('camera_info', 'camera_info')) for a in ('-r', f'{name}/{role}:=/{name}/{topic}')]
        node = start_node(h, model_path, remaps, cameras=['front', 'left'])
        assert bag_eval([str(bag), '--out', str(tmp_path / 'rt'), '--realtime', '--wait', '5',
                         '--cameras', '/front', '/left']) == 0
        streams = node.perception.worker.streams
        gates = {n: streams[n].last_gate_source for n in ('front', 'left')}
    finally:
        h.close()
    rt = json.loads((tmp_path / 'rt' / 'report.json').read_text())
    for name in ('front', 'left'):
        r = rt['cameras'][name]
        assert r['frames_sent'] == 4 and r['frames_received'] + r['frames_dropped'] == 4
        assert r['frames_received'] >= 2, r
    assert len(rt['latencies_ms']) == sum(r['frames_received'] for r in rt['cameras'].values())
    assert gates == {'front': 'hybrid', 'left': 'hybrid'}       # each with its own depth
