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

"""perception_node over real rclpy topics (LOCALHOST discovery, a private domain id)."""
import subprocess
import sys
import time

from conftest import stamped
from depthgate_ros.data.labels import CITYSCAPES_COLORS
from depthgate_ros.data.synthetic import Camera, render_sequence
from depthgate_ros.node.image_codec import array_to_msg, depth_from_msg, image_to_array
from depthgate_ros.node.perception_node import PerceptionNode
from depthgate_ros.tools.player import Player
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

NODE = '/perception_node'
CAM = Camera(width=96, height=48, fx=105.0, fy=105.0)


@pytest.fixture(scope='module')
def frames():
    return list(render_sequence(3, 6, CAM))


@pytest.fixture(scope='module')
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture
def ros(checkpoint):
    h = Player()
    overrides = [Parameter('model_path', value=str(checkpoint)),
                 Parameter('device', value='cpu'), Parameter('depth_timeout', value=0.3),
                 Parameter('mask_classes', value=['road', 'car']),
                 Parameter('publish_confidence', value=True)]
    h.node = h.add(PerceptionNode(context=h.context, parameter_overrides=overrides))
    for name in ('labels', 'labels_color', 'depth', 'confidence', 'gate', 'masks/road',
                 'masks/car'):
        h.collect(Image, f'{NODE}/{name}')
    h.collect(DiagnosticArray, '/diagnostics')
    h.collect(DiagnosticArray, f'{NODE}/frame_info')
    h.image = h.publisher(Image, 'image')
    h.depth = h.publisher(Image, 'depth')
    h.wait_for_subscribers(h.image)
    h.wait_for_subscribers(h.depth)
    # every output the tests read is matched to its collector before the first frame
    pubs = h.node.perception.pubs
    outputs = [pubs[n] for n in ('labels', 'labels_color', 'depth', 'confidence', 'gate',
                                 'frame_info', 'diagnostics')]
    outputs += [pubs['masks/road'], pubs['masks/car']]
    assert h.wait_for(lambda: all(p.get_subscription_count() >= 1 for p in outputs))
    yield h
    h.close()


def _count(h, topic):
    return len(h.messages(f'{NODE}/{topic}'))


def test_outputs_carry_the_input_header_and_agree(ros, frames):
    f = frames[0]
    ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(42, 7)))
    topics = ('labels', 'labels_color', 'depth', 'confidence', 'gate', 'masks/road',
              'masks/car')
    assert ros.wait_for(lambda: all(_count(ros, t) for t in topics))
    msgs = {t: ros.messages(f'{NODE}/{t}')[0][1] for t in topics}
    for t, m in msgs.items():
        assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (
            42, 7, 'camera_optical'), t
        assert (m.height, m.width) == (48, 96)
    labels = image_to_array(msgs['labels'])
    assert msgs['labels'].encoding == 'mono8' and labels.max() < 19
    for name, cls in (('road', 0), ('car', 13)):
        np.testing.assert_array_equal(image_to_array(msgs[f'masks/{name}']),
                                      np.where(labels == cls, 255, 0))
    assert msgs['depth'].encoding == '32FC1'
    depth = depth_from_msg(msgs['depth'])
    assert np.all(np.isfinite(depth) & (depth > 0))        # metres, REP 118 float
    conf = image_to_array(msgs['confidence'])
    assert np.all((conf > 0) & (conf <= 1))
    color = image_to_array(msgs['labels_color'])
    np.testing.assert_array_equal(color, np.array(CITYSCAPES_COLORS, np.uint8)[labels])
    assert image_to_array(msgs['gate']).max() < 5


def _frame_info(h, first_sec):
    """{stamp sec: {key: value}} from ~/frame_info, for frames stamped >= first_sec."""
    out = {}
    for _, m in h.messages(f'{NODE}/frame_info'):
        if m.header.stamp.sec >= first_sec:
            out[m.header.stamp.sec] = _values(m)
    return out


def _values(m):
    return {kv.key: kv.value for kv in m.status[0].values}


def _frame_info_at(h, sec, nanosec, timeout=10):
    """
    Return the ~/frame_info of the frame stamped sec.nanosec, once it has arrived.

    The node counts a frame as processed when it publishes, before DDS delivers.
    """
    def find():
        return next((_values(m) for _, m in h.messages(f'{NODE}/frame_info')
                     if (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nanosec)), None)
    assert h.wait_for(lambda: find() is not None, timeout=timeout), (sec, nanosec)
    return find()


def _send_and_wait(h, frame, sec, with_depth, depth_first=True, gap_s=0.005):
    """
    Send one frame, then wait until the node has finished it.

    No replacement, whatever the machine's load: this is about which gate each frame gets.
    """
    hdr = stamped(sec)
    if with_depth and depth_first:
        h.depth.publish(array_to_msg(frame.depth, '32FC1', hdr))
        time.sleep(gap_s)
    h.image.publish(array_to_msg(frame.rgb, 'rgb8', hdr))
    if with_depth and not depth_first:
        time.sleep(gap_s)
        h.depth.publish(array_to_msg(frame.depth, '32FC1', hdr))
    assert h.wait_for(lambda: sec in _frame_info(h, sec), timeout=20), sec
    return _frame_info(h, sec)[sec]


def test_fallback_to_monocular_and_back(ros, frames):
    gates = {}
    for i in range(16):
        with_depth = not 4 <= i < 10        # depth stops for six frames, then returns
        gates[i] = _send_and_wait(ros, frames[i % len(frames)], 100 + i,
                                  with_depth)['gate_source']
        time.sleep(0.1)
    # every frame gets the gate its pairing says, the first of each phase included (a
    # depth publisher is matched, so the node waits sync_slop for a partner)
    assert [gates[i] for i in range(16)] == ['hybrid'] * 4 + ['predicted'] * 6 + \
        ['hybrid'] * 6, gates
    assert ros.node.perception.last_gate_source == 'hybrid'
    # how long an image waits (depth_timeout exactly) is test_timeouts_follow_sim_time's


def test_depth_resuming_after_a_gap_pairs_the_first_image(ros, frames):
    # depth flows, then is silent for 1 s (depth_timeout 0.3 s); when it resumes, the
    # image comes first and its partner 5 ms later, as a lagging depth pipeline sends them
    for i in range(3):
        assert _send_and_wait(ros, frames[i], 150 + i, True)['gate_source'] == 'hybrid'
    time.sleep(1.0)
    resumed = _send_and_wait(ros, frames[3], 160, True, depth_first=False)
    assert resumed['gate_source'] == 'hybrid', resumed
    # (with nobody publishing depth an image does not wait at all: the sim-time test)


def test_16uc1_and_disparity_give_depth_gating(ros, frames, monkeypatch):
    node = ros.node
    f = frames[1]
    given = {}                                   # what reaches the Predictor, per stamp
    predict = node.perception.predictor.predict

    def spy(rgb, depth=None, **kwargs):
        given[len(given)] = depth
        return predict(rgb, depth, **kwargs)
    monkeypatch.setattr(node.perception.predictor, 'predict', spy)
    mm = np.where(np.isnan(f.depth), 0, np.clip(f.depth * 1000, 0, 65535)).astype(np.uint16)
    disp_pub = ros.publisher(DisparityImage, 'disparity')
    ros.wait_for_subscribers(disp_pub)
    for i in range(6):
        sec = 300 + i
        if i < 3:                                         # 16UC1 millimetres
            ros.depth.publish(array_to_msg(mm, '16UC1', stamped(sec)))
        else:                                             # stereo disparity
            d = DisparityImage(f=CAM.fx, t=CAM.baseline_m)
            d.header = stamped(sec)
            d.image = array_to_msg(np.nan_to_num(f.disparity, nan=0.0), '32FC1', d.header)
            disp_pub.publish(d)
        ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(sec)))
        assert ros.wait_for(lambda: sec in _frame_info(ros, sec)), sec
        assert _frame_info(ros, sec)[sec]['gate_source'] == 'hybrid', i
    assert node.perception.stats['depth_errors'] == 0
    # in metres: millimetres / 1000 (0 = none), and f T / d for disparity (0 = none)
    assert len(given) == 6
    valid = np.isfinite(f.depth)
    for k in range(6):
        assert np.array_equal(np.isfinite(given[k]), valid), k
        if k < 3:     # whole millimetres, up to 16 bits' 65.535 m
            expected, tolerance = np.minimum(f.depth[valid], 65.535), 0.001
        else:
            expected, tolerance = f.depth[valid], 1e-4 * f.depth[valid]
        assert np.all(np.abs(given[k][valid] - expected) <= tolerance), k
    np.testing.assert_allclose(given[0][valid], mm[valid] / 1000.0, rtol=1e-6)


def test_flood_keeps_latency_bounded_and_counts_drops(ros, frames):
    node = ros.node
    original = node.perception.predictor.predict
    model_s = 0.2
    burst = 45

    def slow(*args, **kwargs):
        time.sleep(model_s)
        return original(*args, **kwargs)
    node.perception.predictor.predict = slow
    before = dict(node.perception.stats)
    for i in range(burst):                                  # 1.5 s at 30 Hz
        if i == burst - 1:                  # what the node had finished before the last
            done_before_last = len(_frame_info(ros, 500))
        ros.image.publish(array_to_msg(frames[i % 6].rgb, 'rgb8', stamped(500 + i)))
        time.sleep(1 / 30)
    last = 500 + burst - 1
    # the newest frame is always processed: it is the one left in the slot
    assert ros.wait_for(lambda: last in _frame_info(ros, 500))
    info = _frame_info(ros, 500)
    out = sorted(info)
    assert 3 <= len(out) < burst
    # every image sent is processed or counted as dropped: replaced in the node's slot, or
    # superseded in the reader queue (the stamps skip it); one may still be in flight
    after = node.perception.stats
    processed = after['processed'] - before['processed']
    dropped = after['dropped'] - before['dropped']
    assert abs(burst - (processed + dropped)) <= 1, (before, after)
    assert dropped > 20
    # No backlog: after the last image was sent the node finished at most the frame it was
    # running, one whose ~/frame_info was still on its way, and the last one. A FIFO queue
    # would still hold most of the burst (45 images at 30 Hz against 5 frames/s).
    assert len(out) - done_before_last <= 3, (done_before_last, out)


def test_bad_inputs_are_survived_logged_and_counted(ros, frames, capfd):
    node = ros.node
    f = frames[2]
    before = dict(node.perception.stats)
    bad = Image(height=4, width=4, encoding='yuv422', step=8, data=bytes(32))
    bad.header = stamped(700)
    short = array_to_msg(f.rgb, 'rgb8', stamped(701))
    short.data = short.data[:100]
    empty = Image(height=0, width=0, encoding='rgb8', step=0)
    # unknown encoding, data shorter than height*step, zero-size image; spaced out, since a
    # newer image would replace an unprocessed one (latest-frame-only)
    for k, msg in enumerate((bad, short, empty)):
        ros.image.publish(msg)
        assert ros.wait_for(lambda: node.perception.stats['errors'] >= before['errors'] + k + 1)
    # depth of another size (resampled), NaN/Inf/negative values, zero and backwards stamps
    d = np.full((24, 48), np.nan, np.float32)
    d[:, :10], d[:, 10:20], d[:, 20:30] = np.inf, -3.0, 15.0
    ros.depth.publish(array_to_msg(d, '32FC1', stamped(702)))
    ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(702)))
    assert ros.wait_for(lambda: node.perception.stats['processed'] >= before['processed'] + 1)
    ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(0)))         # zero stamp
    assert ros.wait_for(lambda: node.perception.stats['processed'] >= before['processed'] + 2)
    ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(650)))       # backwards
    assert ros.wait_for(lambda: node.perception.stats['processed'] >= before['processed'] + 3)
    assert node.perception.stats['stamp_warnings'] >= before['stamp_warnings'] + 2
    # zero disparity everywhere: invalid depth, still processed
    disp_pub = ros.publisher(DisparityImage, 'disparity')
    ros.wait_for_subscribers(disp_pub)
    zero = DisparityImage(f=CAM.fx, t=CAM.baseline_m)
    zero.header = stamped(800)
    zero.image = array_to_msg(np.zeros((48, 96), np.float32), '32FC1', stamped(800))
    disp_pub.publish(zero)
    ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(800)))
    assert ros.wait_for(lambda: node.perception.stats['processed'] >= before['processed'] + 4)
    bad_depth = array_to_msg(f.rgb, 'rgb8', stamped(801))  # depth topic with a colour image
    ros.depth.publish(bad_depth)
    ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(801)))
    assert ros.wait_for(
        lambda: node.perception.stats['depth_errors'] >= before['depth_errors'] + 1)
    # and the node still works
    n = _count(ros, 'labels')
    ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(900)))
    assert ros.wait_for(lambda: _count(ros, 'labels') > n)
    diag = ros.node.perception.diagnostics()
    assert diag['errors'] >= before['errors'] + 3 and diag['depth_errors'] >= 1
    # three undecodable images within a second: all counted, one warning (throttled, 5 s)
    log = capfd.readouterr().err
    assert log.count('image dropped:') == 1, log
    assert "image encoding 'yuv422' is not a colour encoding" in log


def test_incompatible_qos_is_a_warning_not_silence(checkpoint, frames, capfd):
    h = Player()
    try:
        node = h.add(PerceptionNode(context=h.context, parameter_overrides=[
            Parameter('model_path', value=str(checkpoint)), Parameter('device', value='cpu'),
            Parameter('input_reliability', value='reliable')]))
        image = h.publisher(Image, 'image')             # best effort, as camera drivers do
        # the node counts the event after logging it: once counted, the warning is written
        # (a count that never comes says DDS raised no event, not that stderr was lost)
        assert h.wait_for(lambda: node.perception.stats['incompatible_qos'] >= 1, timeout=20)
        # readouterr() drains what it returns: keep all of it, as the warning line may be
        # written in pieces and straddle two reads (one CI run failed that way)
        err = []
        assert h.wait_for(lambda: err.append(capfd.readouterr().err) or
                          "a publisher on 'image' has incompatible QoS" in ''.join(err),
                          timeout=5), ''.join(err)
        h.collect(DiagnosticArray, f'{NODE}/frame_info')
        reliable = h.publisher(Image, 'image', reliable=True)
        h.wait_for_subscribers(reliable)
        assert h.wait_for(
            lambda: node.perception.pubs['frame_info'].get_subscription_count() >= 1)
        # and indeed nothing arrives from it: images from a reliable publisher, sent after
        # each best-effort one, arrive alone
        for sec in (1, 3):
            image.publish(array_to_msg(frames[0].rgb, 'rgb8', stamped(sec)))
            reliable.publish(array_to_msg(frames[0].rgb, 'rgb8', stamped(sec + 1)))
            assert h.wait_for(lambda: sec + 1 in _frame_info(h, 0))
        assert sorted(_frame_info(h, 0)) == [2, 4]
        assert node.perception.stats['received'] == 2
    finally:
        h.close()


def test_disabled_outputs_are_not_published_and_loops_change_live(ros, frames):
    node = ros.node
    result = node.set_parameters([Parameter('publish_depth', value=False),
                                  Parameter('loops', value=0)])
    assert all(r.successful for r in result)
    for i in range(3):
        ros.image.publish(array_to_msg(frames[i].rgb, 'rgb8', stamped(1000 + i)))
        # one frame at a time: each is processed (its labels and ~/frame_info arrive)
        assert ros.wait_for(lambda i=i: 1000 + i in _frame_info(ros, 1000) and any(
            m.header.stamp.sec == 1000 + i for _, m in ros.messages(f'{NODE}/labels')))
    # the frames ran feed-forward (loops as reported per frame, not the attribute) and no
    # depth image was published for any of them, although their labels were
    assert [int(v['loops']) for v in _frame_info(ros, 1000).values()] == [0, 0, 0]
    assert not [m for _, m in ros.messages(f'{NODE}/depth') if m.header.stamp.sec >= 1000]
    rejected = node.set_parameters([Parameter('device', value='cuda')])[0]
    assert not rejected.successful and 'restart' in rejected.reason
    rejected = node.set_parameters([Parameter('gate_source', value='stereo')])[0]
    assert not rejected.successful and 'gate_source' in rejected.reason
    rejected = node.set_parameters([Parameter('mask_classes', value=['unicorn'])])[0]
    assert not rejected.successful and 'unicorn' in rejected.reason


def test_latency_budget_and_hard_gate_apply_live_and_show_per_frame(ros, frames):
    node = ros.node
    refine = node.perception.predictor.model.refine.forward

    def slow_refine(*args, **kwargs):                 # each recurrent loop costs 150 ms
        time.sleep(0.15)
        return refine(*args, **kwargs)
    node.perception.predictor.model.refine.forward = slow_refine

    def loops_of(first, budget_ms, hard):
        assert all(r.successful for r in node.set_parameters([
            Parameter('latency_budget_ms', value=budget_ms), Parameter('hard_gate', value=hard)]))
        for i in range(3):
            ros.image.publish(array_to_msg(frames[i].rgb, 'rgb8', stamped(first + i)))
            assert ros.wait_for(lambda: first + i in _frame_info(ros, first))
        return [int(v['loops']) for v in _frame_info(ros, first).values()]

    assert loops_of(1100, 0.0, False) == [2, 2, 2]            # no budget: the model's loops
    # 100 ms cannot hold a 150 ms loop: once a loop has been timed, frames stop at loop 0
    assert loops_of(1200, 100.0, True)[1:] == [0, 0]
    assert node.perception.predictor.hard_gate
    assert loops_of(1300, 5000.0, False) == [2, 2, 2]
    assert not node.perception.predictor.hard_gate


def test_points_need_camera_info_then_arrive(ros, frames):
    node = ros.node
    ros.collect(PointCloud2, f'{NODE}/points')
    assert node.set_parameters([Parameter('publish_points', value=True)])[0].successful
    info_pub = ros.publisher(CameraInfo, 'camera_info')
    ros.wait_for_subscribers(info_pub)
    info = CameraInfo(width=96, height=48)
    info.k = CAM.k_matrix()
    info_pub.publish(info)
    time.sleep(0.2)
    f = frames[0]
    for i in range(3):
        ros.depth.publish(array_to_msg(f.depth, '32FC1', stamped(1100 + i)))
        ros.image.publish(array_to_msg(f.rgb, 'rgb8', stamped(1100 + i)))
        time.sleep(0.15)
    assert ros.wait_for(lambda: any(m.header.stamp.sec == 1102 for _, m in
                                    ros.messages(f'{NODE}/points')))
    assert node.perception.last_gate_source == 'hybrid'
    cloud = ros.messages(f'{NODE}/points')[-1][1]
    assert [x.name for x in cloud.fields] == ['x', 'y', 'z', 'rgb', 'label']
    pts = np.frombuffer(bytes(cloud.data), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                                  ('rgb', '<f4'), ('label', '<u4')])
    # every pixel has a point (sensor depth, the network's where the sensor has none), in
    # row-major order; where the sensor measured, z is its depth and x follows from K
    assert len(pts) == 48 * 96
    z = pts['z'].reshape(48, 96)
    valid = np.isfinite(f.depth)
    np.testing.assert_allclose(z[valid], f.depth[valid], rtol=1e-6)
    u = np.broadcast_to(np.arange(96), (48, 96))
    np.testing.assert_allclose(pts['x'].reshape(48, 96)[valid],
                               ((u - (CAM.u0 - 0.5)) / CAM.fx * z)[valid], rtol=1e-5,
                               atol=1e-5)


def test_diagnostics_are_published(ros, frames):
    ros.image.publish(array_to_msg(frames[0].rgb, 'rgb8', stamped(1200)))
    assert ros.wait_for(lambda: any(
        s.name == 'depthgate_ros: perception_node' for _, m in ros.messages('/diagnostics')
        for s in m.status), timeout=5)
    assert ros.wait_for(lambda: 1200 in _frame_info(ros, 1200))
    ros.image.publish(array_to_msg(frames[1].rgb, 'rgb8', stamped(1201)))
    assert ros.wait_for(lambda: 1201 in _frame_info(ros, 1200))

    def latest():
        found = [{kv.key: kv.value for kv in s.values} for _, m in ros.messages('/diagnostics')
                 for s in m.status if s.name == 'depthgate_ros: perception_node']
        return found[-1] if found else {}
    # the values, once a diagnostics period has passed the second frame: this node (a fresh
    # one per test) received and processed exactly the two images, monocular, on the CPU
    assert ros.wait_for(lambda: latest().get('processed') == '2', timeout=5)
    d = latest()
    assert (d['received'], d['dropped'], d['errors'], d['depth_errors']) == ('2', '0', '0', '0')
    assert (d['gate_source'], d['device'], d['loops']) == ('predicted', 'cpu', '2')
    latency = [float(v['latency_ms']) for v in _frame_info(ros, 1200).values()]
    assert min(latency) <= float(d['latency_p50_ms']) <= max(latency)
    assert float(d['processed_rate_hz']) == pytest.approx(0.2)     # 2 in the 10 s window


def test_unloadable_model_is_a_clear_fatal_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-m', 'depthgate_ros.node.perception_node', '--ros-args', '-p',
         f"model_path:={tmp_path / 'missing.pt'}"], capture_output=True, text=True,
        timeout=60, env={**__import__('os').environ})
    assert proc.returncode == 1
    assert 'cannot start' in proc.stderr + proc.stdout
    assert 'checkpoint not found' in proc.stderr + proc.stdout


def test_timeouts_follow_sim_time(checkpoint, frames, monkeypatch):
    """depth_timeout is counted on the node's clock: with sim time, exactly, in sim seconds."""
    from rosgraph_msgs.msg import Clock
    h = Player()
    try:
        node = h.add(PerceptionNode(context=h.context, parameter_overrides=[
            Parameter('model_path', value=str(checkpoint)), Parameter('device', value='cpu'),
            Parameter('depth_timeout', value=0.3), Parameter('use_sim_time', value=True)]))
        h.collect(DiagnosticArray, f'{NODE}/frame_info')
        clock = h.publisher(Clock, '/clock', reliable=True)
        image, depth = h.publisher(Image, 'image'), h.publisher(Image, 'depth')
        for p in (clock, image, depth):
            h.wait_for_subscribers(p)
        assert h.wait_for(
            lambda: node.perception.pubs['frame_info'].get_subscription_count() >= 1)

        def tick(nsec, sec=1000):
            c = Clock()
            c.clock.sec, c.clock.nanosec = sec, nsec
            clock.publish(c)
            assert h.wait_for(lambda: node.get_clock().now().nanoseconds ==
                              sec * 10 ** 9 + nsec)

        def stale_depth():          # keeps depth flowing, pairs with nothing
            depth.publish(array_to_msg(frames[0].depth, '32FC1', stamped(990)))
            time.sleep(0.05)
        for i in range(3):                      # sensor gating at sim time 1000.x
            tick(i * 100_000_000)
            depth.publish(array_to_msg(frames[0].depth, '32FC1', stamped(1000, i * 10 ** 8)))
            image.publish(array_to_msg(frames[0].rgb, 'rgb8', stamped(1000, i * 10 ** 8)))
            assert h.wait_for(lambda: node.perception.stats['processed'] == i + 1)
        assert node.perception.last_gate_source == 'hybrid'

        checks = []                             # (sim now, wall clock, wait?) of each check
        pairing = node.perception.pipeline.pairing
        should_wait = pairing.should_wait

        def spy(arrival_ns, now_ns, expected=False):
            wait = should_wait(arrival_ns, now_ns, expected)
            checks.append((now_ns, time.monotonic(), wait))
            return wait
        monkeypatch.setattr(pairing, 'should_wait', spy)
        # an image without a partner arrives at sim 1000.3 while depth keeps flowing: it
        # waits until sim 1000.6, however much wall time passes
        tick(300_000_000)
        stale_depth()
        image.publish(array_to_msg(frames[1].rgb, 'rgb8', stamped(1000, 300_000_000)))
        assert h.wait_for(lambda: checks)
        start = checks[0][1]
        assert h.wait_for(lambda: checks[-1][1] > start + 0.8)   # rechecked after 0.8 s
        assert node.perception.stats['processed'] == 3 and checks[-1][2]
        tick(550_000_000)                       # 0.25 s after the image: still waiting
        stale_depth()
        assert h.wait_for(lambda: any(c[0] == 1000_550_000_000 for c in checks))
        assert node.perception.stats['processed'] == 3
        tick(650_000_000)                       # 0.35 s after: the wait is over
        assert h.wait_for(lambda: node.perception.stats['processed'] == 4, timeout=5)
        assert [c[0] for c in checks if not c[2]] == [1000_650_000_000]
        assert _frame_info_at(h, 1000, 300_000_000)['gate_source'] == 'predicted'

        # With no depth publisher at all, an image does not wait for depth: the clock stands
        # still from here, so any wait (even the slop's) would never end.
        h.peer.destroy_publisher(depth)
        assert h.wait_for(lambda: not node.perception.depth_expected(''), timeout=10)
        tick(0, sec=1002)
        image.publish(array_to_msg(frames[2].rgb, 'rgb8', stamped(1002)))
        assert h.wait_for(lambda: node.perception.stats['processed'] == 5, timeout=10)
        assert _frame_info_at(h, 1002, 0)['gate_source'] == 'predicted'
    finally:
        h.close()
