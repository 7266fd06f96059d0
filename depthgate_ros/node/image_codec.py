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
sensor_msgs/Image, CompressedImage and stereo_msgs/DisparityImage <-> numpy.

Without cv_bridge (not installable here, and its PyPI port breaks on numpy 2).

Raw decoding is zero-copy where the layout allows (the array views the message's buffer) and
honours `step` row padding and `is_bigendian`. Depth follows REP 118: 32FC1 metres with NaN
invalid, 16UC1 millimetres with 0 invalid. Compressed input is read as image_transport's
`compressed` and `compressed_depth` plugins write it (see `compressed_depth`).
"""
from __future__ import annotations

import struct
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from ..model.depth_bins import disparity_to_depth

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4), 'mono8': (np.uint8, 1), 'mono16': (np.uint16, 1),
    '8UC1': (np.uint8, 1), '16UC1': (np.uint16, 1), '32FC1': (np.float32, 1),
}
COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')
DEPTH_ENCODINGS = ('32FC1', '16UC1')


class ImageDecodeError(ValueError):
    """The message cannot be read as an image of a supported encoding."""


def image_to_array(msg: Image) -> np.ndarray:
    """
    (H, W) or (H, W, C) array of the message data in its own encoding.

    A read-only view of the message buffer when the rows are aligned to the pixel size and the byte
    order is native.
    """
    if msg.encoding not in ENCODINGS:
        raise ImageDecodeError(f'unsupported encoding {msg.encoding!r}; supported: '
                               f"{', '.join(ENCODINGS)}")
    base, channels = ENCODINGS[msg.encoding]
    dtype = np.dtype(base).newbyteorder('>' if msg.is_bigendian else '<')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageDecodeError(f'empty image ({w}x{h})')
    row = w * channels * dtype.itemsize
    if step < row:
        raise ImageDecodeError(f'step {step} is smaller than a {msg.encoding} row of width '
                               f'{w} ({row} bytes)')
    needed = step * (h - 1) + row
    if len(msg.data) < needed:
        raise ImageDecodeError(f'data has {len(msg.data)} bytes, a {w}x{h} {msg.encoding} '
                               f'image with step {step} needs {needed}')
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if step % dtype.itemsize == 0:
        typed = buf[: len(buf) // dtype.itemsize * dtype.itemsize].view(dtype)
        out = np.lib.stride_tricks.as_strided(
            typed, shape=(h, w, channels),
            strides=(step, channels * dtype.itemsize, dtype.itemsize), writeable=False)
    else:  # rows not aligned to the pixel size: gather them (a copy)
        rows = np.stack([buf[r * step: r * step + row] for r in range(h)])
        out = rows.view(dtype).reshape(h, w, channels)
    if not dtype.isnative:
        out = out.astype(dtype.newbyteorder('='))
    return out[..., 0] if channels == 1 else out


def rgb_from_msg(msg: Image) -> np.ndarray:
    """Any supported colour encoding -> (H, W, 3) uint8 RGB (a copy only where needed)."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ImageDecodeError(f'image encoding {msg.encoding!r} is not a colour encoding; '
                               f"supported: {', '.join(COLOR_ENCODINGS)}")
    a = image_to_array(msg)
    if msg.encoding == 'rgb8':
        return a
    if msg.encoding == 'mono8':
        return np.repeat(a[..., None], 3, axis=2)
    if msg.encoding == 'bgr8':
        return a[..., ::-1]
    return a[..., [2, 1, 0]] if msg.encoding == 'bgra8' else a[..., :3]


def depth_from_msg(msg: Image, unit_scale_16u: float = 0.001) -> np.ndarray:
    """
    REP 118 depth -> float32 metres with NaN invalid.

    16UC1 values are multiplied by `unit_scale_16u` (millimetres by default); 0 is invalid.
    NaN, Inf and values <= 0 are invalid in 32FC1.
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageDecodeError(f'depth encoding {msg.encoding!r} is not supported; use '
                               f"{' or '.join(DEPTH_ENCODINGS)} (REP 118)")
    a = image_to_array(msg)
    if msg.encoding == '16UC1':
        return np.where(a > 0, a.astype(np.float32) * np.float32(unit_scale_16u),
                        np.float32(np.nan))
    return np.where(np.isfinite(a) & (a > 0), a, np.float32(np.nan)).astype(np.float32)


def decode_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """
    Decode a raw or compressed (jpeg/png) colour image to (H, W, 3) uint8 RGB.

    By field, not by class: rosbags' message classes (bag evaluation) decode the same way.
    """
    if hasattr(msg, 'encoding'):
        return rgb_from_msg(msg)
    fmt = msg.format.lower()
    if 'compresseddepth' in fmt.replace(' ', ''):
        raise ImageDecodeError(f'format {msg.format!r} is a compressedDepth image, not colour')
    a = _imdecode(msg.data, cv2.IMREAD_UNCHANGED, msg.format)
    if a.dtype != np.uint8:
        raise ImageDecodeError(f'compressed image ({msg.format!r}) decodes to {a.dtype}; a '
                               'colour image needs 8 bits')
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    # OpenCV decodes to BGR(A) whatever the publisher's encoding was.
    return np.ascontiguousarray(a[..., 2::-1])


# compressed_depth's header: int32 format, then the two float32 quantisation parameters of
# inverse depth (little-endian: image_transport writes the struct as the machine lays it out).
DEPTH_HEADER = struct.Struct('<iff')


def compressed_depth(msg: CompressedImage, unit_scale_16u: float = 0.001) -> np.ndarray:
    """
    image_transport's compressedDepth -> float32 metres with NaN invalid.

    `format` is `16UC1; compressedDepth png` or `32FC1; compressedDepth png` (older publishers:
    `16UC1; compressedDepth`). `data` is a 12-byte header, then a 16-bit PNG. 16UC1 is stored
    as-is (units of `unit_scale_16u`, 0 invalid); 32FC1 as quantised inverse depth v, read back
    as depth = A / (v - B) with v = 0 invalid. RVL (newer publishers) is refused by name.
    """
    parts = [p.strip() for p in msg.format.split(';')]
    encoding = parts[0]
    kind = parts[1].split() if len(parts) > 1 else []
    if len(parts) < 2 or not kind or kind[0] != 'compressedDepth':
        raise ImageDecodeError(f'format {msg.format!r} is not compressedDepth (expected '
                               "'16UC1; compressedDepth png' or '32FC1; compressedDepth png')")
    codec = kind[1] if len(kind) > 1 else 'png'
    if codec != 'png':
        raise ImageDecodeError(f'compressedDepth codec {codec!r} is not supported (only png); '
                               "set the publisher's compressedDepth format to png")
    if encoding not in DEPTH_ENCODINGS:
        raise ImageDecodeError(f'compressedDepth of {encoding!r}: only 16UC1 and 32FC1 exist')
    data = bytes(msg.data)
    if len(data) <= DEPTH_HEADER.size:
        raise ImageDecodeError(f'compressedDepth data has {len(data)} bytes: no image after the '
                               f'{DEPTH_HEADER.size}-byte header')
    _, a_param, b_param = DEPTH_HEADER.unpack_from(data)
    v = _imdecode(data[DEPTH_HEADER.size:], cv2.IMREAD_UNCHANGED, msg.format)
    if v.dtype != np.uint16 or v.ndim != 2:
        raise ImageDecodeError(f'compressedDepth image is {v.dtype} with shape {v.shape}; '
                               'a 16-bit single-channel PNG was expected')
    if encoding == '16UC1':
        return np.where(v > 0, v.astype(np.float32) * np.float32(unit_scale_16u),
                        np.float32(np.nan))
    with np.errstate(divide='ignore', invalid='ignore'):
        depth = np.float32(a_param) / (v.astype(np.float32) - np.float32(b_param))
    return np.where((v > 0) & np.isfinite(depth) & (depth > 0), depth,
                    np.float32(np.nan)).astype(np.float32)


def decode_depth(kind: str, msg, unit_scale_16u: float = 0.001) -> np.ndarray:
    """
    Depth in metres (NaN invalid) from any depth input the node takes.

    `kind`: `depth` (REP 118 Image), `compressedDepth` (CompressedImage) or `disparity`
    (stereo_msgs/DisparityImage, depth = f T / d).
    """
    if kind == 'depth':
        return depth_from_msg(msg, unit_scale_16u)
    if kind == 'compressedDepth':
        return compressed_depth(msg, unit_scale_16u)
    if kind != 'disparity':
        raise ValueError(f'unknown depth input kind {kind!r}')
    if msg.f <= 0 or msg.t <= 0:
        raise ImageDecodeError(f'disparity with f={msg.f}, T={msg.t} cannot give depth')
    return disparity_to_depth(depth_from_msg(msg.image), msg.f, msg.t)


def decode_partner(item: tuple[str, object], unit_scale_16u: float) -> np.ndarray:
    """decode_depth of a paired (kind, message) item: the FramePipeline's depth decoder."""
    return decode_depth(*item, unit_scale_16u)


def _imdecode(data, flags: int, fmt: str) -> np.ndarray:
    buf = np.frombuffer(bytes(data), np.uint8)
    a = cv2.imdecode(buf, flags) if buf.size else None
    if a is None:
        raise ImageDecodeError(f'compressed data ({buf.size} bytes, format {fmt!r}) is not a '
                               'readable JPEG or PNG')
    return a


def array_to_msg(arr: np.ndarray, encoding: str, header) -> Image:
    """(H, W) or (H, W, C) array -> Image with the given header (never `now()`)."""
    base, channels = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr, dtype=np.dtype(base).newbyteorder('='))
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] != channels:
        raise ValueError(f'{encoding} needs {channels} channels, got {arr.shape}')
    msg = Image()
    msg.header = header
    msg.height, msg.width = arr.shape[0], arr.shape[1]
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == 'big'
    msg.step = arr.shape[1] * channels * arr.dtype.itemsize
    msg.data = arr.tobytes()
    return msg


def camera_focal(info, width: int) -> float | None:
    """Return the horizontal focal length of CameraInfo `info` at an image `width` wide."""
    if info is None or not info.width or info.k[0] <= 0:
        return None
    return float(info.k[0]) * width / info.width
