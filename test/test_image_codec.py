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
Image messages <-> numpy: encodings, step padding, byte order, REP 118 depth.

And image_transport's compressed and compressedDepth formats, as its plugins encode them.
"""
import cv2
from depthgate_ros.node.image_codec import (array_to_msg, camera_focal, decode_depth,
                                            decode_rgb, depth_from_msg, image_to_array,
                                            ImageDecodeError, rgb_from_msg)
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from transport_peer import compressed, compressed_depth


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


# -- compressed transports, encoded by the image_transport-like peer -----------------------

def _scene(h=48, w=64, seed=3):
    rng = np.random.default_rng(seed)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 2)
    return rgb


def test_compressed_png_is_lossless_and_jpeg_close():
    rgb = _scene()
    np.testing.assert_array_equal(decode_rgb(compressed(rgb, Header(), 'png')), rgb)
    jpeg = decode_rgb(compressed(rgb, Header(), 'jpeg'))
    assert jpeg.shape == rgb.shape and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - rgb).mean() < 4          # RGB order kept, not BGR
    # older publishers write the bare codec name; a grey PNG becomes three equal channels
    assert decode_rgb(compressed(rgb, Header(), 'jpeg', fmt='jpeg')).shape == rgb.shape
    ok, grey = cv2.imencode('.png', rgb[..., 0].copy())
    mono = decode_rgb(CompressedImage(format='mono8; png compressed mono8', data=grey.tobytes()))
    np.testing.assert_array_equal(mono, np.repeat(rgb[..., :1], 3, axis=2))


def test_compressed_depth_round_trips_to_a_millimetre():
    rng = np.random.default_rng(0)
    mm = rng.integers(300, 12000, (48, 64)).astype(np.uint16)
    mm[:5] = 0                                                  # 0 = invalid
    got = decode_depth('compressedDepth', compressed_depth(mm, '16UC1', Header()))
    np.testing.assert_array_equal(np.isnan(got), mm == 0)
    np.testing.assert_allclose(got[mm > 0], mm[mm > 0] / 1000.0, atol=1e-6)
    # 32FC1 travels as quantised inverse depth: within 1 mm up to 3 m (q = 100) ...
    near = rng.uniform(0.3, 3.0, (48, 64)).astype(np.float32)
    near[0, :4] = [np.nan, 0.0, -1.0, np.inf]
    got = decode_depth('compressedDepth', compressed_depth(near, '32FC1', Header()))
    assert np.isnan(got[0, :4]).all()
    assert np.abs(got[1:] - near[1:]).max() <= 1e-3
    # ... and within the quantisation step d^2 / (A - d) beyond; past depth_max invalid
    far = rng.uniform(3.0, 9.9, (48, 64)).astype(np.float32)
    far[0, 0] = 10.5
    got = decode_depth('compressedDepth', compressed_depth(far, '32FC1', Header()))
    a = 100.0 * 101.0
    err = np.abs(got - far)[1:]
    assert np.all(err <= far[1:] ** 2 / (a - far[1:]) + 1e-4) and err.max() > 1e-3
    assert np.isnan(got[0, 0])


@pytest.mark.parametrize('msg, words', [
    (CompressedImage(format='16UC1; compressedDepth rvl', data=b'\0' * 40), "codec 'rvl'"),
    (CompressedImage(format='16UC1; png compressed mono16', data=b'\0' * 40),
     'not compressedDepth'),
    (CompressedImage(format='16UC1; compressedDepth png', data=b'\0' * 12), 'no image after'),
    (CompressedImage(format='16UC1; compressedDepth png', data=b'\0' * 12 + b'garbage'),
     'not a readable JPEG or PNG'),
    (CompressedImage(format='8UC1; compressedDepth png', data=b'\0' * 40),
     'only 16UC1 and 32FC1'),
])
def test_bad_compressed_depth_is_refused_by_name(msg, words):
    with pytest.raises(ImageDecodeError, match=words.replace('(', r'\(')):
        decode_depth('compressedDepth', msg)


def test_an_8_bit_png_is_not_compressed_depth():
    ok, png = cv2.imencode('.png', np.ones((4, 4), np.uint8))
    msg = CompressedImage(format='16UC1; compressedDepth png', data=b'\0' * 12 + png.tobytes())
    with pytest.raises(ImageDecodeError, match='16-bit single-channel'):
        decode_depth('compressedDepth', msg)


@pytest.mark.parametrize('data, fmt, words', [
    (b'', 'jpeg', 'not a readable'),
    (b'\xff\xd8\xff truncated', 'rgb8; jpeg compressed bgr8', 'not a readable'),
    (None, '16UC1; compressedDepth png', 'not colour'),
])
def test_bad_compressed_image_is_refused(data, fmt, words):
    if data is None:
        ok, png = cv2.imencode('.png', np.ones((4, 4), np.uint16))
        data = png.tobytes()
    with pytest.raises(ImageDecodeError, match=words):
        decode_rgb(CompressedImage(format=fmt, data=data))


def test_a_16_bit_png_is_not_a_colour_image():
    ok, png = cv2.imencode('.png', np.ones((4, 4), np.uint16))
    with pytest.raises(ImageDecodeError, match='needs 8 bits'):
        decode_rgb(CompressedImage(format='mono16; png compressed mono16', data=png.tobytes()))
