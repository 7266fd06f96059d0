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
The node parameters the README names, each seen in what the node does over real topics.

Expected values come from outside the node: OpenCV's Gaussian blur, the eager model for an
ONNX file run by ONNX Runtime, millimetres scaled by hand.
"""
import time

from conftest import stamped, start_node
import cv2
from depthgate_ros.data.synthetic import Camera, render_sequence
from depthgate_ros.export import export_onnx
from depthgate_ros.inference import Predictor
from depthgate_ros.model.checkpoint import load_checkpoint, save_checkpoint
from depthgate_ros.node.image_codec import array_to_msg, depth_from_msg, image_to_array
from depthgate_ros.tools.player import Player
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
import torch

NODE = '/perception_node'
CAM = Camera(width=96, height=48, fx=105.0, fy=105.0)


@pytest.fixture(scope='module')
def frames():
    return list(render_sequence(5, 3, CAM))


class _Rig:
    """A node in a Player, its frame_info and chosen outputs collected, publishers matched."""

    def __init__(self, checkpoint, outputs=('labels',), **params):
        self.h = Player()
        self.node = start_node(self.h, checkpoint, **params)
        for name in outputs:
            self.h.collect(Image, f'{NODE}/{name}')
        self.h.collect(DiagnosticArray, f'{NODE}/frame_info')
        self.image = self.h.publisher(Image, 'image')
        self.depth = self.h.publisher(Image, 'depth')
        self.h.wait_for_subscribers(self.image)
        self.h.wait_for_subscribers(self.depth)
        pubs = self.node.perception.pubs
        assert self.h.wait_for(lambda: all(pubs[n].get_subscription_count() >= 1
                                           for n in (*outputs, 'frame_info')))

    def send(self, sec, rgb, depth=None, encoding='32FC1', depth_offset_ms=0):
        """Publish one frame (depth first) and wait for its ~/frame_info; return its values."""
        if depth is not None:
            ns = sec * 10 ** 9 + depth_offset_ms * 10 ** 6
            self.depth.publish(array_to_msg(depth, encoding, stamped(*divmod(ns, 10 ** 9))))
            time.sleep(0.01)
        self.image.publish(array_to_msg(rgb, 'rgb8', stamped(sec)))
        assert self.h.wait_for(lambda: sec in self.info()), sec
        return self.info()[sec]

    def info(self):
        return {m.header.stamp.sec: {kv.key: kv.value for kv in m.status[0].values}
                for _, m in self.h.messages(f'{NODE}/frame_info')}

    def output(self, name, sec):
        assert self.h.wait_for(lambda: sec in {m.header.stamp.sec for _, m in
                                               self.h.messages(f'{NODE}/{name}')})
        return next(m for _, m in self.h.messages(f'{NODE}/{name}')
                    if m.header.stamp.sec == sec)

    def close(self):
        self.h.close()


def _spy_depth(node, monkeypatch):
    """Record the depth each frame hands the Predictor (None: monocular)."""
    given = []
    predict = node.perception.predictor.predict

    def spy(rgb, depth=None, **kwargs):
        given.append(depth)
        return predict(rgb, depth, **kwargs)
    monkeypatch.setattr(node.perception.predictor, 'predict', spy)
    return given


def test_num_threads_bounds_torch_while_the_node_infers(tiny_checkpoint, frames, monkeypatch):
    outside = torch.get_num_threads()
    torch.set_num_threads(2)        # whatever this test worker's share of the cores is
    rig = _Rig(tiny_checkpoint, num_threads=1)
    try:
        seen = []
        predict = rig.node.perception.predictor.predict

        def spy(*args, **kwargs):
            seen.append(torch.get_num_threads())
            return predict(*args, **kwargs)
        monkeypatch.setattr(rig.node.perception.predictor, 'predict', spy)
        rig.send(10, frames[0].rgb)
        assert seen == [1]
    finally:
        rig.close()
        torch.set_num_threads(outside)          # torch's setting is per process


def test_sync_slop_and_depth_unit_scale_change_live(tiny_checkpoint, frames, monkeypatch):
    f = frames[1]
    mm = np.where(np.isfinite(f.depth), np.clip(f.depth * 1000, 1, 65535), 0).astype(np.uint16)
    rig = _Rig(tiny_checkpoint, depth_timeout=0.3)
    try:
        given = _spy_depth(rig.node, monkeypatch)

        def gate(sec):           # 16UC1 depth stamped 30 ms before its image
            return rig.send(sec, f.rgb, mm, '16UC1', depth_offset_ms=-30)['gate_source']

        assert gate(20) == 'hybrid'                     # default slop 50 ms: paired
        assert all(r.successful for r in rig.node.set_parameters([
            Parameter('sync_slop', value=0.01), Parameter('depth_unit_scale', value=0.002)]))
        assert gate(21) == 'predicted'                  # 30 ms is out of a 10 ms slop
        assert all(r.successful for r in rig.node.set_parameters([
            Parameter('sync_slop', value=0.05)]))
        assert gate(22) == 'hybrid'
    finally:
        rig.close()
    valid = mm > 0
    assert [g is None for g in given] == [False, True, False]
    # millimetres x 0.001 before the change, x 0.002 (a 2 mm unit) after it; 0 = no depth
    np.testing.assert_allclose(given[0][valid], mm[valid] * 0.001, rtol=1e-6)
    np.testing.assert_allclose(given[2][valid], mm[valid] * 0.002, rtol=1e-6)
    assert np.isnan(given[2][~valid]).all()


def test_input_queue_depth_sizes_the_depth_readers(tiny_checkpoint):
    # DDS does not tell a peer a reader's history depth, so this reads the readers the node
    # created; images keep history 1 whatever the parameter (only the newest is processed)
    rig = _Rig(tiny_checkpoint, input_queue_depth=7)
    try:
        subs = rig.node.perception.subs
        assert {role: s.qos_profile.depth for role, s in subs.items()} == {
            'image': 1, 'depth': 7, 'disparity': 7, 'camera_info': 7}
        assert rig.node.perception.pipeline.pairing.queue.maxlen == 10
    finally:
        rig.close()


def test_diagnostics_period_on_the_node_clock(tiny_checkpoint):
    from rosgraph_msgs.msg import Clock
    rig = _Rig(tiny_checkpoint, diagnostics_period=0.5, use_sim_time=True)
    try:
        rig.h.collect(DiagnosticArray, '/diagnostics')
        clock = rig.h.publisher(Clock, '/clock', reliable=True)
        rig.h.wait_for_subscribers(clock)
        assert rig.h.wait_for(
            lambda: rig.node.perception.pubs['diagnostics'].get_subscription_count() >= 1)
        # 3 s of simulated time in 0.1 s steps, in about 1.5 s of wall time
        for tick in range(31):
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = 1000 + tick // 10, tick % 10 * 100_000_000
            clock.publish(msg)
            time.sleep(0.05)
        time.sleep(0.3)
        stamps = sorted(m.header.stamp.sec + m.header.stamp.nanosec / 1e9
                        for _, m in rig.h.messages('/diagnostics')
                        if m.header.stamp.sec >= 1000)
    finally:
        rig.close()
    # every 0.5 s of the node's (simulated) clock: 6 in 3 s (a 1 s period gives 3, a wall
    # clock timer 3 as well); an executor running late may stamp one a tick later
    assert 5 <= len(stamps) <= 7, stamps
    assert np.median(np.diff(stamps)) == pytest.approx(0.5, abs=0.01), stamps


def test_an_onnx_model_path_runs_like_the_checkpoint(tiny_checkpoint, frames, tmp_path):
    model, info, _ = load_checkpoint(tiny_checkpoint)
    onnx = export_onnx(model, info, tmp_path / 'tiny.onnx', gate='hybrid', loops=1,
                       size=(48, 96))
    rig = _Rig(onnx, outputs=('labels', 'depth'))
    try:
        f = frames[0]
        got = rig.send(30, f.rgb, f.depth)
        labels = image_to_array(rig.output('labels', 30))
        depth = depth_from_msg(rig.output('depth', 30))
        assert rig.node.perception.model_path.endswith('.onnx')
    finally:
        rig.close()
    # the eager network on the same frame: ONNX Runtime in the node agrees with it
    eager = Predictor(model, info, device='cpu', loops=1).predict(f.rgb, f.depth,
                                                                  gate='hybrid')
    assert got['gate_source'] == 'hybrid' and int(got['loops']) == 1
    assert np.mean(labels == eager.labels) > 0.999
    np.testing.assert_allclose(depth, eager.depth, rtol=1e-4)


def test_tta_and_depth_blur_in_the_node(tiny_checkpoint, frames, monkeypatch, tmp_path):
    # an untrained head predicts nearly flat depth, which a blur hardly changes: steeper
    # depth weights give it structure to smooth
    model, info, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.depth.classifier.' in name or '.depth.regressor.' in name:
                p.mul_(30)
    checkpoint = save_checkpoint(tmp_path / 'steep.pt', model, info)
    rig = _Rig(checkpoint, outputs=('depth',), tta_flip=True, tta_scales=[0.75, 1.0],
               depth_blur_sigma=1.5)
    try:
        seen = []
        net = rig.node.perception.predictor.model
        iter_loops = net.iter_loops

        def spy(image, *args, **kwargs):
            seen.append(image.detach().clone())
            return iter_loops(image, *args, **kwargs)
        monkeypatch.setattr(net, 'iter_loops', spy)
        f = frames[2]
        rig.send(40, f.rgb)
        depth = depth_from_msg(rig.output('depth', 40))
    finally:
        rig.close()
    # four views: 0.75 and 1, each also mirrored
    assert [tuple(x.shape[-2:]) for x in seen] == [(36, 72), (36, 72), (48, 96), (48, 96)]
    for plain, mirrored in ((seen[0], seen[1]), (seen[2], seen[3])):
        assert torch.equal(mirrored, plain.flip(-1))
    # the published depth is the views' depth blurred as OpenCV blurs it (sigma 1.5 px)
    views = Predictor(model, info, device='cpu', tta_flip=True, tta_scales=(0.75, 1.0))
    unblurred = views.predict(f.rgb).depth
    k = 2 * 5 + 1                                    # 3 sigma each side, as torchvision
    expected = cv2.GaussianBlur(unblurred, (k, k), 1.5, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(depth, expected, rtol=1e-4)
    assert np.abs(depth / unblurred - 1).max() > 0.01            # and the blur shows
