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
Compressed input through perception_node over real rclpy topics.

The peer encodes as image_transport's compressed and compressed_depth plugins do; a node on raw
topics sees the same frames, so the two can be compared label for label.
"""
from conftest import stamped
from depthgate_ros.data.synthetic import Camera, render_sequence
from depthgate_ros.node.image_codec import array_to_msg, image_to_array
from depthgate_ros.node.perception_node import PerceptionNode
from depthgate_ros.tools.player import Player
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from transport_peer import compressed, compressed_depth

CAM = Camera(width=96, height=48, fx=105.0, fy=105.0)


@pytest.fixture(scope='module')
def frames():
    return list(render_sequence(5, 4, CAM))


@pytest.fixture
def ros(tiny_checkpoint):
    h = Player()
    common = [Parameter('model_path', value=str(tiny_checkpoint)),
              Parameter('device', value='cpu'), Parameter('depth_timeout', value=2.0)]
    h.raw = h.add(PerceptionNode(context=h.context, namespace='raw',
                                 parameter_overrides=common))
    h.packed = h.add(PerceptionNode(
        context=h.context, namespace='packed',
        cli_args=['--ros-args', '-r', 'image:=/cam/color', '-r', 'depth:=/cam/aligned'],
        parameter_overrides=common + [
            Parameter('image_transport', value='compressed'),
            Parameter('depth_transport', value='compressedDepth')]))
    for ns in ('raw', 'packed'):
        h.collect(Image, f'/{ns}/perception_node/labels')
        h.collect(DiagnosticArray, f'/{ns}/perception_node/frame_info')
    h.pubs = {'raw_image': h.publisher(Image, '/raw/image'),
              'raw_depth': h.publisher(Image, '/raw/depth'),
              # image_transport's topics under the remapped base names
              'image': h.publisher(CompressedImage, '/cam/color/compressed'),
              'depth': h.publisher(CompressedImage, '/cam/aligned/compressedDepth')}
    for pub in h.pubs.values():
        h.wait_for_subscribers(pub)
    for node in (h.raw, h.packed):
        assert h.wait_for(lambda node=node: node.perception.pubs['labels'].
                          get_subscription_count() >= 1)
    yield h
    h.close()


def _by_stamp(h, topic):
    return {m.header.stamp.sec: m for _, m in h.messages(topic)}


def _gates(h, ns):
    return {m.header.stamp.sec: {kv.key: kv.value for kv in m.status[0].values}['gate_source']
            for _, m in h.messages(f'/{ns}/perception_node/frame_info')}


def test_png_and_16uc1_compressed_depth_give_the_raw_labels(ros, frames):
    for k, f in enumerate(frames):
        mm = np.where(np.isfinite(f.depth), np.round(f.depth * 1000), 0).astype(np.uint16)
        # depth first: each image finds its partner waiting
        ros.pubs['depth'].publish(compressed_depth(mm, '16UC1', stamped(10 + k)))
        ros.pubs['raw_depth'].publish(array_to_msg(mm, '16UC1', stamped(10 + k)))
        assert ros.wait_for(lambda k=k: all(
            node.perception.pipeline.partner(int((10 + k) * 1e9))
            for node in (ros.raw, ros.packed)), timeout=10)
        ros.pubs['image'].publish(compressed(f.rgb, stamped(10 + k), 'png'))
        ros.pubs['raw_image'].publish(array_to_msg(f.rgb, 'rgb8', stamped(10 + k)))
        assert ros.wait_for(lambda k=k: all(
            10 + k in _by_stamp(ros, f'/{ns}/perception_node/labels') for ns in ('raw', 'packed')))
    raw = _by_stamp(ros, '/raw/perception_node/labels')
    packed = _by_stamp(ros, '/packed/perception_node/labels')
    stamps = [10 + k for k in range(len(frames))]
    assert sorted(packed) == stamps and sorted(raw) == stamps
    for s in stamps:
        np.testing.assert_array_equal(image_to_array(packed[s]), image_to_array(raw[s]))
    assert ros.wait_for(lambda: len(_gates(ros, 'packed')) == len(frames))
    assert set(_gates(ros, 'packed').values()) == {'hybrid'}        # sensor depth was used
    assert ros.packed.perception.stats['depth_errors'] == 0


def test_jpeg_with_32fc1_compressed_depth_gates_on_the_sensor(ros, frames):
    ros.packed.set_parameters([Parameter('gate_source', value='sensor')])
    for k, f in enumerate(frames):
        ros.pubs['depth'].publish(compressed_depth(f.depth, '32FC1', stamped(30 + k),
                                                   depth_max=80.0))
        assert ros.wait_for(lambda k=k: ros.packed.perception.pipeline.partner(
            int((30 + k) * 1e9)), timeout=10)
        ros.pubs['image'].publish(compressed(f.rgb, stamped(30 + k), 'jpeg'))
        assert ros.wait_for(lambda k=k: 30 + k in _gates(ros, 'packed'))
    assert set(_gates(ros, 'packed').values()) == {'sensor'}
    labels = _by_stamp(ros, '/packed/perception_node/labels')
    assert {(m.height, m.width) for m in labels.values()} == {(48, 96)}
    assert ros.packed.perception.stats['depth_errors'] == 0


def test_corrupt_compressed_input_is_counted_and_the_node_goes_on(ros, frames):
    node, f = ros.packed, frames[0]
    ros.pubs['image'].publish(CompressedImage(header=stamped(50), format='rgb8; jpeg '
                                              'compressed bgr8', data=b'\xff\xd8 not a jpeg'))
    assert ros.wait_for(lambda: node.perception.stats['errors'] >= 1)
    bad = compressed_depth(np.ones((48, 96), np.uint16), '16UC1', stamped(51),
                           fmt='16UC1; compressedDepth rvl')
    ros.pubs['depth'].publish(bad)
    assert ros.wait_for(lambda: node.perception.pipeline.partner(int(51e9)), timeout=10)
    ros.pubs['image'].publish(compressed(f.rgb, stamped(51), 'jpeg'))
    assert ros.wait_for(lambda: node.perception.stats['depth_errors'] >= 1)
    assert ros.wait_for(lambda: _gates(ros, 'packed').get(51) == 'predicted')
