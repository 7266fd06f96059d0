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

"""sensor_msgs/Image <-> numpy: encodings, step padding, byte order, REP 118 depth."""
from depthgate_ros.ros.image_codec import (array_to_msg, camera_focal, depth_from_msg,
                                           image_to_array, ImageDecodeError, rgb_from_msg)
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header


def _msg(arr, encoding, pad=0, bigendian=False):
    arr = np.ascontiguousarray(arr)
    if bigendian:
        arr = arr.astype(arr.dtype.newbyteorder('>'))
    h = arr.shape[0]
    rows = arr.reshape(h, -1).view(np.uint8)
    padded = np.zeros((h, rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    m = Image(height=h, width=arr.shape[1], encoding=encoding, is_bigendian=int(bigendian),
              step=padded.shape[1])
    m.data = padded.tobytes()
    return m


RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize('pad', [0, 3, 64])
def test_colour_encodings_with_row_padding(pad):
    np.testing.assert_array_equal(rgb_from_msg(_msg(RGB, 'rgb8', pad)), RGB)
    np.testing.assert_array_equal(rgb_from_msg(_msg(RGB[..., ::-1], 'bgr8', pad)), RGB)
    rgba = np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], 2)
    np.testing.assert_array_equal(rgb_from_msg(_msg(rgba, 'rgba8', pad)), RGB)
    np.testing.assert_array_equal(rgb_from_msg(_msg(rgba[..., [2, 1, 0, 3]], 'bgra8', pad)), RGB)
    mono = RGB[..., 0]
    np.testing.assert_array_equal(rgb_from_msg(_msg(mono, 'mono8', pad)),
                                  np.repeat(mono[..., None], 3, 2))


def test_rgb8_decoding_is_zero_copy():
    m = _msg(RGB, 'rgb8', pad=4)
    a = image_to_array(m)
    assert np.shares_memory(a, np.frombuffer(m.data, np.uint8))


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('pad', [0, 1, 6])
def test_depth_encodings_rep118(bigendian, pad):
    mm = np.array([[0, 1000, 2500], [65535, 1, 40]], np.uint16)
    d = depth_from_msg(_msg(mm, '16UC1', pad, bigendian))
    np.testing.assert_allclose(d, [[np.nan, 1.0, 2.5], [65.535, 0.001, 0.04]], rtol=1e-6)
    metres = np.array([[np.nan, 1.5, -2.0], [np.inf, 0.0, 3.25]], np.float32)
    d = depth_from_msg(_msg(metres, '32FC1', pad, bigendian))
    np.testing.assert_array_equal(np.isnan(d), [[True, False, True], [True, True, False]])
    assert d[0, 1] == 1.5 and d[1, 2] == 3.25
    assert depth_from_msg(_msg(mm, '16UC1'), unit_scale_16u=0.0001)[0, 1] == pytest.approx(0.1)


def test_bad_images_are_named():
    with pytest.raises(ImageDecodeError, match="unsupported encoding 'yuv422'.*rgb8"):
        image_to_array(Image(height=2, width=2, encoding='yuv422', step=4, data=bytes(8)))
    short = _msg(RGB, 'rgb8')
    short.data = bytes(len(short.data) - 1)
    with pytest.raises(ImageDecodeError, match='needs'):
        image_to_array(short)
    with pytest.raises(ImageDecodeError, match='empty'):
        image_to_array(Image(height=0, width=4, encoding='rgb8', step=12))
    with pytest.raises(ImageDecodeError, match='step 5 is smaller'):
        image_to_array(Image(height=1, width=2, encoding='rgb8', step=5, data=bytes(6)))
    with pytest.raises(ImageDecodeError, match='not a colour encoding'):
        rgb_from_msg(_msg(np.zeros((2, 2), np.float32), '32FC1'))
    with pytest.raises(ImageDecodeError, match='REP 118'):
        depth_from_msg(_msg(RGB, 'rgb8'))


def test_round_trip_through_array_to_msg():
    header = Header(frame_id='cam')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    for arr, enc in [(RGB, 'rgb8'), (RGB[..., 0], 'mono8'),
                     (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000, 'mono16'),
                     (np.linspace(0, 5, 12, dtype=np.float32).reshape(3, 4), '32FC1')]:
        m = array_to_msg(arr, enc, header)
        assert m.header.frame_id == 'cam' and m.header.stamp.nanosec == 345
        np.testing.assert_array_equal(image_to_array(m), arr)


def test_camera_focal_at_the_image_width():
    info = CameraInfo(width=640, height=480)
    info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    assert camera_focal(info, 640) == 500.0
    assert camera_focal(info, 320) == 250.0          # a half-size image of the same camera
    assert camera_focal(None, 640) is None
    assert camera_focal(CameraInfo(), 640) is None    # uncalibrated: width 0, K zeros
