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
A synthetic drive as a rosbag2 (sqlite3 or mcap); cli/make_bag.py is its command.

Topics: /camera/image_raw (rgb8), /camera/depth/image_raw (32FC1 metres, or 16UC1 mm),
/camera/disparity (stereo_msgs/DisparityImage), /camera/camera_info and /camera/labels
(mono8 Cityscapes train ids, 255 = ignore: ground truth for depthgate-bag-eval). With
`cameras` (names of data/synthetic.py's CAMERA_RING), each camera's under its own name
(/front/image_raw, ...), looking its own way, all at the same instants.

Depth and disparity are what a sensor measures of the scene (`--sensor`, default the car
stereo rig: noise, holes, limited range; docs/sensors.md), or the exact render with
`--sensor exact`.
"""
from __future__ import annotations

from pathlib import Path
import shutil

import numpy as np

from .bags import BagError, BagWriter, CAMERA_INFO, DISPARITY, header, IMAGE, image_msg, TYPESTORE
from ..data.sensors import measure, sensor_by_name
from ..data.synthetic import Camera, CAMERA_RING, render_sequence
from ..model.depth_bins import disparity_to_depth

# Each camera's topics, `{name}` standing for the camera's name.
PATTERNS = {'image': '/{name}/image_raw', 'depth': '/{name}/depth/image_raw',
            'disparity': '/{name}/disparity', 'camera_info': '/{name}/camera_info',
            'labels': '/{name}/labels'}
START_NS = 1_700_000_000 * 1_000_000_000


def camera_info_msg(cam: Camera, hdr):
    T = TYPESTORE.types
    k = np.array(cam.k_matrix())
    return T[CAMERA_INFO](
        header=hdr, height=cam.height, width=cam.width, distortion_model='plumb_bob',
        d=np.zeros(5), k=k, r=np.eye(3).ravel(),
        p=np.concatenate([k.reshape(3, 3), np.zeros((3, 1))], 1).ravel(),
        binning_x=0, binning_y=0,
        roi=T['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                  do_rectify=False))


def make_bag(out: Path, frames: int = 20, seed: int = 7, size=(128, 256), fps: float = 10.0,
             storage: str = 'sqlite3', depth_encoding: str = '32FC1',
             depth_frames: int | None = None, sensor: str = 'stereo',
             cameras: tuple[str, ...] = ('camera',)) -> Path:
    """
    Write the bag; `depth_frames` limits depth and disparity to the first N frames.

    `cameras`: 'camera' (looking ahead) or names from CAMERA_RING, each recorded under its name.
    """
    out = Path(out)
    if out.exists():
        raise BagError(f'{out} exists; rosbag2 writes a new directory')
    try:
        device = sensor_by_name(sensor)
    except ValueError as e:
        raise BagError(str(e)) from e
    unknown = [c for c in cameras if c != 'camera' and c not in CAMERA_RING]
    if unknown or not cameras or len(set(cameras)) < len(cameras):
        raise BagError(f"cameras {list(cameras)}: each once, 'camera' or one of "
                       f"{', '.join(CAMERA_RING)}")
    h, w = size
    f = 560.0 * w / 512
    try:
        with BagWriter(out, storage) as bag:
            for name in cameras:
                for key, msgtype in (('image', IMAGE), ('depth', IMAGE),
                                     ('disparity', DISPARITY), ('camera_info', CAMERA_INFO),
                                     ('labels', IMAGE)):
                    bag.add(_topics(name)[key], msgtype)
            # all cameras at the same instants, written in recording order
            drives = [(_topics(name), render_sequence(seed, frames, Camera(
                width=w, height=h, fx=f, fy=f, yaw_deg=CAMERA_RING.get(name, 0.0)), fps=fps))
                for name in cameras]
            for moment in zip(*(sequence for _, sequence in drives)):
                for (topics, _), fr in zip(drives, moment):
                    _write_frame(bag, topics, fr, seed, device, depth_encoding, depth_frames)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)   # nothing half-written is left behind
        raise
    return out


def _topics(name: str) -> dict[str, str]:
    return {role: pattern.format(name=name) for role, pattern in PATTERNS.items()}


def _write_frame(bag: BagWriter, topics: dict[str, str], fr, seed: int, device,
                 depth_encoding: str, depth_frames: int | None) -> None:
    """Record one camera's frame: camera_info, depth and disparity, labels, then the image."""
    T, cam, i = TYPESTORE.types, fr.camera, fr.meta['index']
    t = START_NS + round(fr.meta['stamp_s'] * 1e9)
    hdr = header(t, topics['image'].split('/')[1] + '_optical')
    bag.write(topics['camera_info'], t, camera_info_msg(cam, hdr))
    if depth_frames is None or i < depth_frames:
        depth = measure(device, fr.depth, cam.fx, np.random.default_rng((seed, i)), fr.rgb)
        if depth_encoding == '16UC1':
            mm = np.where(np.isfinite(depth), np.clip(np.round(depth * 1000), 1, 65535), 0)
            bag.write(topics['depth'], t, image_msg(mm.astype(np.uint16), '16UC1', hdr))
        else:
            bag.write(topics['depth'], t, image_msg(depth, '32FC1', hdr))
        # f B / x maps depth to disparity as it maps disparity to depth
        disp = np.nan_to_num(disparity_to_depth(depth, cam.fx, cam.baseline_m), nan=0.0)
        bag.write(topics['disparity'], t, T[DISPARITY](
            header=hdr, image=image_msg(disp, '32FC1', hdr), f=cam.fx, t=cam.baseline_m,
            valid_window=T['sensor_msgs/msg/RegionOfInterest'](
                x_offset=0, y_offset=0, height=cam.height, width=cam.width, do_rectify=False),
            min_disparity=0.0, max_disparity=float(np.nanmax(disp)), delta_d=0.0))
    bag.write(topics['labels'], t, image_msg(fr.labels, 'mono8', hdr))
    bag.write(topics['image'], t, image_msg(fr.rgb, 'rgb8', hdr))
