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

"""sensor_msgs/PointCloud2 with x, y, z, rgb, label from a depth image and CameraInfo."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField

FIELDS = [PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1),
          PointField(name='y', offset=4, datatype=PointField.FLOAT32, count=1),
          PointField(name='z', offset=8, datatype=PointField.FLOAT32, count=1),
          PointField(name='rgb', offset=12, datatype=PointField.FLOAT32, count=1),
          PointField(name='label', offset=16, datatype=PointField.UINT32, count=1)]
POINT_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('rgb', '<f4'),
                        ('label', '<u4')])


def depth_to_cloud(depth: np.ndarray, rgb: np.ndarray, labels: np.ndarray,
                   info: CameraInfo, header) -> PointCloud2:
    """
    Back-project valid depth pixels with the camera's K.

    Optical frame: x right, y down, z forward. K is scaled when CameraInfo describes another
    resolution than the image.
    """
    h, w = depth.shape
    sx = w / info.width if info.width else 1.0
    sy = h / info.height if info.height else 1.0
    fx, fy, cx, cy = info.k[0] * sx, info.k[4] * sy, info.k[2] * sx, info.k[5] * sy
    if fx <= 0 or fy <= 0:
        raise ValueError(f'camera_info has no usable intrinsics (fx={info.k[0]}, fy={info.k[4]})')
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[v, u]
    pts = np.empty(len(z), POINT_DTYPE)
    pts['x'] = (u - cx) / fx * z          # ROS/OpenCV: pixel centres at integers
    pts['y'] = (v - cy) / fy * z
    pts['z'] = z
    c = rgb[v, u].astype(np.uint32)
    # PCL's packed float rgb: 0x00RRGGBB reinterpreted as float32.
    pts['rgb'] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)
    pts['label'] = labels[v, u]
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, len(pts)
    msg.fields = FIELDS
    msg.is_bigendian = False
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = POINT_DTYPE.itemsize * len(pts)
    msg.is_dense = True
    msg.data = pts.tobytes()
    return msg
