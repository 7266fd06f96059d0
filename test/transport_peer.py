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
A test peer that encodes as image_transport's `compressed` and `compressed_depth` plugins do.

Written from the plugins' documented behaviour, not from our decoder: OpenCV's imencode of the
bgr8 image for `compressed`; for `compressedDepth` a 12-byte header (int32 format, float32 A,
float32 B) and a 16-bit PNG, 32FC1 as v = A / depth + B truncated to uint16 with
A = q (q + 1), B = 1 - A / depth_max, and 0 for invalid or beyond depth_max.
"""
import struct

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage

INV_DEPTH = 0       # compressed_depth's compressionFormat for the PNG codec


def compressed(rgb: np.ndarray, header, codec: str = 'jpeg', fmt: str | None = None):
    ok, data = cv2.imencode('.jpg' if codec == 'jpeg' else '.png', rgb[..., ::-1].copy())
    assert ok
    return CompressedImage(header=header, format=fmt or f'rgb8; {codec} compressed bgr8',
                           data=data.tobytes())


def compressed_depth(depth: np.ndarray, encoding: str, header, quantization: float = 100.0,
                     depth_max: float = 10.0, fmt: str | None = None):
    if encoding == '16UC1':
        image, a, b = depth.astype(np.uint16), 0.0, 0.0
    else:
        a = quantization * (quantization + 1.0)
        b = 1.0 - a / depth_max
        with np.errstate(divide='ignore', invalid='ignore'):
            ok = (depth > 0) & (depth < depth_max)
            image = np.where(ok, np.trunc(a / np.where(ok, depth, 1.0) + b), 0).astype(np.uint16)
    good, png = cv2.imencode('.png', image)
    assert good
    data = struct.pack('<iff', INV_DEPTH, a, b) + png.tobytes()
    return CompressedImage(header=header, format=fmt or f'{encoding}; compressedDepth png',
                           data=data)
