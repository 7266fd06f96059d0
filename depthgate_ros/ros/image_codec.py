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
sensor_msgs/Image <-> numpy.

Without cv_bridge (not installable here, and its PyPI port breaks on numpy 2).

Decoding is zero-copy where the layout allows (the array views the message's buffer) and
honours `step` row padding and `is_bigendian`. Depth follows REP 118: 32FC1 metres with NaN
invalid, 16UC1 millimetres with 0 invalid.
"""
from __future__ import annotations

import sys

import numpy as np
from sensor_msgs.msg import Image

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
