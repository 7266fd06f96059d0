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
depthgate-bag-eval on recordings as robots and other tools make them.

A bare .mcap written by mcap-ros2-support (not rosbags, not us), ROS 1 .bag files written by
rosbags' ROS 1 writer (one, and two read together), and recordings it must refuse. Each
readable one gives the labels of the same frames read from our own rosbag2.
"""
import dataclasses
import json
from pathlib import Path
import sys

from depthgate_ros.cli.bag_eval import main as bag_eval
from depthgate_ros.node.image_codec import image_to_array
from depthgate_ros.tools.bags import BagWriter, header, image_msg, open_bag, read_topics
from depthgate_ros.tools.make_bag import make_bag
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores
import yaml

SIZE = (48, 96)
ROS1 = get_typestore(Stores.ROS1_NOETIC)
# ROS 2 message definitions as MCAP's ros2msg schema encoding carries them
HEADER_DEF = ('=' * 80 + '\nMSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n'
              + '=' * 80 + '\nMSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n')
IMAGE_DEF = ('std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n'
             'uint8 is_bigendian\nuint32 step\nuint8[] data\n' + HEADER_DEF)


@pytest.fixture(scope='module')
def model(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
    """Our own rosbag2 of 4 frames: image, 16UC1 depth, labels (and disparity, camera info)."""
    return make_bag(tmp_path_factory.mktemp('raw') / 'bag', frames=4, size=SIZE,
                    depth_encoding='16UC1')


def _messages(bag: Path) -> list:
    reader = open_bag(bag)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        return [(t, topics[t], ns, m) for t, ns, m in read_topics(reader, list(topics))]
    finally:
        reader.close()


def _evaluate(paths: list, out: Path, model: Path) -> tuple[dict, list]:
    code = bag_eval([*map(str, paths), '--out', str(out), '--checkpoint', str(model),
                     '--device', 'cpu', '--write-bag'])
    assert code == 0
    report = json.loads((out / 'report.json').read_text())
    labels = [image_to_array(m) for t, _, _, m in _messages(out / 'outputs')
              if t == '/depthgate/labels']
    return report, labels


def _same_labels(got, want):
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_a_bare_mcap_from_another_writer(raw, model, tmp_path):
    from mcap_ros2.writer import Writer
    path = tmp_path / 'drive.mcap'                   # no metadata.yaml anywhere near it
    with open(path, 'wb') as f:
        writer = Writer(f)
        schema = writer.register_msgdef('sensor_msgs/msg/Image', IMAGE_DEF)
        for topic, msgtype, ns, m in _messages(raw):
            if msgtype != 'sensor_msgs/msg/Image':
                continue
            writer.write_message(topic, schema, {
                'header': {'stamp': {'sec': m.header.stamp.sec,
                                     'nanosec': m.header.stamp.nanosec},
                           'frame_id': m.header.frame_id},
                'height': m.height, 'width': m.width, 'encoding': m.encoding,
                'is_bigendian': m.is_bigendian, 'step': m.step, 'data': bytes(m.data)},
                log_time=ns, publish_time=ns)
        writer.finish()
    want_report, want = _evaluate([raw], tmp_path / 'want', model)
    report, got = _evaluate([path], tmp_path / 'got', model)
    _same_labels(got, want)
    assert report['loop1']['miou'] == want_report['loop1']['miou']
    assert report['frames_with_sensor_depth'] == 4       # the 16UC1 depth topic was found


def _to_ros1(msg, msgtype):
    """Rebuild the message as a ROS 1 recorder writes it (header.seq, CameraInfo's capitals)."""
    cls = ROS1.types[msgtype]
    values = {}
    for f in dataclasses.fields(cls):
        if f.name == 'seq':
            values[f.name] = 0
        elif f.name == 'header':
            values[f.name] = _to_ros1(msg.header, 'std_msgs/msg/Header')
        elif f.name in ('roi',):
            values[f.name] = _to_ros1(getattr(msg, f.name), 'sensor_msgs/msg/RegionOfInterest')
        elif f.name == 'image':
            values[f.name] = _to_ros1(msg.image, 'sensor_msgs/msg/Image')
        else:
            values[f.name] = getattr(msg, f.name if hasattr(msg, f.name) else f.name.lower())
    return cls(**values)


def _write_ros1(path: Path, messages) -> Path:
    from rosbags.rosbag1 import Writer
    with Writer(path) as writer:
        conns = {}
        for topic, msgtype, ns, m in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ROS1)
            writer.write(conns[topic], ns, ROS1.serialize_ros1(_to_ros1(m, msgtype), msgtype))
    return path


def test_ros1_bags_one_and_two_read_together(raw, model, tmp_path):
    messages = _messages(raw)
    _, want = _evaluate([raw], tmp_path / 'want', model)
    one = _write_ros1(tmp_path / 'drive.bag', messages)
    report, got = _evaluate([one], tmp_path / 'one', model)
    _same_labels(got, want)
    assert report['frames_with_sensor_depth'] == 4
    # split by time into two files, given in the wrong order: read together in time order
    times = sorted({ns for _, _, ns, _ in messages})
    cut = times[len(times) // 2]
    first = _write_ros1(tmp_path / 'a.bag', [m for m in messages if m[2] < cut])
    second = _write_ros1(tmp_path / 'b.bag', [m for m in messages if m[2] >= cut])
    _, got = _evaluate([second, first], tmp_path / 'two', model)
    _same_labels(got, want)


@pytest.mark.parametrize('make, words', [
    (lambda tmp, raw: [tmp / 'missing.mcap'], 'no such file'),
    (lambda tmp, raw: [raw, _touch(tmp / 'x.bag')], 'cannot be mixed'),
    (lambda tmp, raw: [raw, raw], 'several rosbag2 recordings'),
    (lambda tmp, raw: [_truncated_mcap(raw, tmp)], 'cannot open'),
    (lambda tmp, raw: [_touch(tmp / 'notes.txt')], 'not a recording this tool reads'),
    (lambda tmp, raw: [_unknown_type_bag(tmp)], 'cannot open'),
])
def test_bad_recordings_stop_cleanly(make, words, raw, model, tmp_path, capsys):
    # one line naming the reason, exit 2, no report folder (and no half-written temp one)
    paths = make(tmp_path, raw)
    out = tmp_path / 'report'
    assert bag_eval([*map(str, paths), '--out', str(out), '--checkpoint', str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob('.report.*'))


def _unknown_type_bag(tmp: Path) -> Path:
    """Return a ROS 1 bag whose message type's definition names a type nobody knows."""
    from rosbags.rosbag1 import Writer
    path = tmp / 'custom.bag'
    with Writer(path) as writer:
        conn = writer.add_connection('/blob', 'my_msgs/msg/Blob', md5sum='0' * 32,
                                     msgdef='my_msgs/Unknown payload')
        writer.write(conn, 1_700_000_000_000_000_000, b'\x00')
    return path


def _touch(path: Path) -> Path:
    path.write_bytes(b'')
    return path


def _truncated_mcap(raw: Path, tmp: Path) -> Path:
    src = make_bag(tmp / 'm', frames=2, size=SIZE, storage='mcap')
    data = next(src.glob('*.mcap')).read_bytes()
    path = tmp / 'cut.mcap'
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_time_window_and_every_nth_image(model, tmp_path):
    bag = make_bag(tmp_path / 'long', frames=10, size=SIZE, fps=10.0)
    messages = _messages(bag)
    t0 = min(ns for _, _, ns, _ in messages)
    images = [(ns, m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)
              for t, _, ns, m in messages if t == '/camera/image_raw']
    start, duration = 0.25, 0.5
    window = [stamp for ns, stamp in images
              if t0 + start * 1e9 <= ns < t0 + (start + duration) * 1e9]
    assert len(window) == 5                     # 0.1 s apart: a real window, not everything
    for every, want in ((1, window), (2, window[::2])):
        out = tmp_path / f'every{every}'
        assert bag_eval([str(bag), '--out', str(out), '--checkpoint', str(model), '--device',
                         'cpu', '--write-bag', '--start', str(start), '--duration',
                         str(duration), '--every', str(every)]) == 0
        report = json.loads((out / 'report.json').read_text())
        got = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
               for t, _, _, m in _messages(out / 'outputs') if t == '/depthgate/labels']
        assert got == want and report['frames_evaluated'] == len(want)
        assert report['frames_in_window'] == 5 and report['frames_in_bag'] == 10
        # every evaluated frame found its depth partner
        assert report['frames_with_sensor_depth'] == len(want)


def _split(raw: Path, out: Path) -> Path:
    """Lay the recording out as `ros2 bag record --max-bag-duration` does: 2 files, 1 folder."""
    messages = _messages(raw)
    times = sorted({ns for _, _, ns, _ in messages})
    cut = times[len(times) // 2]
    halves = [[m for m in messages if m[2] < cut], [m for m in messages if m[2] >= cut]]
    parts = []
    for k, half in enumerate(halves):
        with BagWriter(out.parent / f'part{k}', 'mcap') as writer:
            for topic, msgtype in dict.fromkeys((t, mt) for t, mt, _, _ in messages):
                writer.add(topic, msgtype)
            for topic, _, ns, m in half:
                writer.write(topic, ns, m)
        parts.append(yaml.safe_load((out.parent / f'part{k}' / 'metadata.yaml').read_text())[
            'rosbag2_bagfile_information'])
    out.mkdir()
    files = [p['files'][0] for p in parts]
    info = parts[0]
    info['relative_file_paths'], info['files'] = [], []
    for k, file in enumerate(files):
        name = f'{out.name}_{k}.mcap'
        (out.parent / f'part{k}' / f'part{k}.mcap').rename(out / name)
        info['relative_file_paths'].append(name)
        info['files'].append({**file, 'path': name})
    info['message_count'] = sum(p['message_count'] for p in parts)
    end = parts[1]['starting_time']['nanoseconds_since_epoch'] + \
        parts[1]['duration']['nanoseconds']
    info['duration'] = {'nanoseconds': end - info['starting_time']['nanoseconds_since_epoch']}
    for entry, other in zip(info['topics_with_message_count'],
                            parts[1]['topics_with_message_count']):
        entry['message_count'] += other['message_count']
    (out / 'metadata.yaml').write_text(yaml.safe_dump({'rosbag2_bagfile_information': info}))
    return out


def test_a_split_rosbag2(raw, model, tmp_path):
    split = _split(raw, tmp_path / 'split')
    assert len(list(split.glob('*.mcap'))) == 2
    _, want = _evaluate([raw], tmp_path / 'want', model)
    for given in (split, next(split.glob('*_1.mcap'))):    # the folder, or any file in it
        report, got = _evaluate([given], tmp_path / f'got_{given.name}', model)
        _same_labels(got, want)
        assert report['frames_in_bag'] == 4 and report['frames_with_sensor_depth'] == 4


def test_the_output_bag_is_an_mcap_other_tools_read(raw, model, tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    _, ours = _evaluate([raw], tmp_path / 'rep', model)
    outputs = tmp_path / 'rep' / 'outputs'
    [file] = list(outputs.glob('*.mcap'))
    with open(file, 'rb') as f:                      # the mcap library, not rosbags
        decoded = [m for _, _, _, m in make_reader(f, decoder_factories=[DecoderFactory()])
                   .iter_decoded_messages(topics=['/depthgate/labels'])]
    theirs = [np.frombuffer(m.data, np.uint8).reshape(m.height, m.width) for m in decoded]
    _same_labels(theirs, ours)
    assert {m.encoding for m in decoded} == {'mono8'}
    info = yaml.safe_load((outputs / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert info['storage_identifier'] == 'mcap' and info['relative_file_paths'] == [file.name]
    for entry in info['topics_with_message_count']:
        meta = entry['topic_metadata']
        [qos] = meta['offered_qos_profiles']           # as perception_node's publishers offer
        assert (qos['reliability'], qos['history'], qos['depth'], qos['durability']) == (
            'reliable', 'keep_last', 5, 'volatile')
        assert meta['type'] == 'sensor_msgs/msg/Image' and entry['message_count'] == 4
        # the type hash the ROS package itself generated (sensor_msgs' Image.json)
        generated = Path(sys.prefix) / 'share' / 'sensor_msgs' / 'msg' / 'Image.json'
        if generated.is_file():
            want = json.loads(generated.read_text())['type_hashes'][0]['hash_string']
            assert meta['type_description_hash'] == want


def test_a_topic_of_the_wrong_type_is_refused_by_name(raw, model, tmp_path, capsys):
    bag = _write_ros1(tmp_path / 'drive.bag', _messages(raw))
    out = tmp_path / 'rep'
    assert bag_eval([str(bag), '--out', str(out), '--checkpoint', str(model),
                     '--image', '/camera/camera_info']) == 2
    err = capsys.readouterr().err.strip()
    assert "--image topic '/camera/camera_info' is sensor_msgs/msg/CameraInfo" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_max_depth_and_an_explicit_labels_topic(raw, model, tmp_path):
    # the sensor depth of the recording, counted by hand: pixels with valid depth up to 10 m
    depth = [image_to_array(m) for t, _, _, m in _messages(raw)
             if t == '/camera/depth/image_raw']
    mm = np.stack(depth)
    near = int(((mm > 0) & (mm <= 10_000)).sum())
    valid = int((mm > 0).sum())
    assert 0 < near < valid                        # the cap really leaves pixels out
    reports = {}
    for name, extra in (('all', []), ('capped', ['--max-depth', '10'])):
        out = tmp_path / name
        assert bag_eval([str(raw), '--out', str(out), '--checkpoint', str(model), '--device',
                         'cpu', '--labels', '/camera/labels', *extra]) == 0
        reports[name] = json.loads((out / 'report.json').read_text())
    assert reports['all']['monocular_depth']['pixels'] == valid
    assert reports['capped']['monocular_depth']['pixels'] == near
    assert reports['capped']['topics']['labels'] == '/camera/labels' and \
        'loop1' in reports['capped']


def test_an_ambiguous_choice_lists_the_topics(model, tmp_path, capsys):
    writer_path = tmp_path / 'two_cameras'
    with BagWriter(writer_path, 'mcap') as writer:
        for topic in ('/left/image_raw', '/right/image_raw'):
            writer.add(topic, 'sensor_msgs/msg/Image')
            writer.write(topic, 10**18, image_msg(np.zeros((8, 8, 3), np.uint8), 'rgb8',
                                                  header(10**18, 'cam')))
    out = tmp_path / 'rep'
    assert bag_eval([str(writer_path), '--out', str(out), '--checkpoint', str(model)]) == 2
    err = capsys.readouterr().err
    assert 'ambiguous image topic' in err and 'pass --image' in err
    assert '/left/image_raw  [sensor_msgs/msg/Image]  1 msgs' in err
    assert '/right/image_raw  [sensor_msgs/msg/Image]  1 msgs' in err and not out.exists()


def test_disparity_alone_gives_the_gate_its_depth(raw, model, tmp_path):
    # the recording without its depth topic: stereo disparity only, named explicitly
    bag = tmp_path / 'stereo'
    kept = [m for m in _messages(raw) if m[0] != '/camera/depth/image_raw']
    with BagWriter(bag, 'mcap') as writer:
        for topic, msgtype in dict.fromkeys((t, mt) for t, mt, _, _ in kept):
            writer.add(topic, msgtype)
        for topic, _, ns, m in kept:
            writer.write(topic, ns, m)
    disparity = np.stack([image_to_array(m.image) for t, _, _, m in kept
                          if t == '/camera/disparity'])
    out = tmp_path / 'rep'
    assert bag_eval([str(bag), '--out', str(out), '--checkpoint', str(model), '--device',
                     'cpu', '--disparity', '/camera/disparity']) == 0
    report = json.loads((out / 'report.json').read_text())
    assert report['topics']['depth'] is None and report['frames_with_sensor_depth'] == 4
    # depth = f T / d exists exactly where the disparity is positive
    assert report['monocular_depth']['pixels'] == int((disparity > 0).sum())


def test_ros1_messages_become_the_ros2_types(raw, tmp_path):
    bag = _write_ros1(tmp_path / 'drive.bag', _messages(raw))
    theirs = {t: m for t, _, _, m in _messages(bag)}
    ours = {t: m for t, _, _, m in _messages(raw)}
    info = theirs['/camera/camera_info']
    # the ROS 2 field names and layout: k (not K), no header.seq
    assert info.__msgtype__ == 'sensor_msgs/msg/CameraInfo' and not hasattr(info, 'K')
    assert list(info.k) == list(ours['/camera/camera_info'].k) and info.k[0] > 0
    assert not hasattr(info.header, 'seq')
    assert {f.name for f in dataclasses.fields(info)} == {
        f.name for f in dataclasses.fields(ours['/camera/camera_info'])}


def test_realtime_plays_a_ros1_bag_into_the_node(raw, model, tmp_path):
    from conftest import node_on_bag_topics
    from depthgate_ros.tools.player import Player
    messages = _messages(raw)
    bag = _write_ros1(tmp_path / 'drive.bag', messages)
    h = Player()
    try:
        node = node_on_bag_topics(h, model)
        assert bag_eval([str(bag), '--out', str(tmp_path / 'rt'), '--realtime', '--rate',
                         '0.5', '--wait', '5']) == 0
        stats = node.perception.stats
    finally:
        h.close()
    r = json.loads((tmp_path / 'rt' / 'report.json').read_text())
    assert r['frames_sent'] == 4 and r['frames_received'] == 4
    assert stats['errors'] == 0 and stats['depth_errors'] == 0
    # --rate 0.5: the images went out at half the recorded 10 Hz. The player sleeps until each
    # message's time, so a busy machine only sends later; the margin is for a first image
    # sent late (measured 5.01 Hz); played at the recorded rate, this would read 10 Hz.
    logged = sorted(ns for t, _, ns, _ in messages if t == '/camera/image_raw')
    recorded_hz = (len(logged) - 1) / ((logged[-1] - logged[0]) / 1e9)
    assert r['input_rate_hz'] < 0.75 * recorded_hz, (r['input_rate_hz'], recorded_hz)
