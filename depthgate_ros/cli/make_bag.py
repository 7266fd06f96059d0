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
depthgate-make-bag: a synthetic drive as a rosbag2 (sqlite3 or mcap).

    depthgate-make-bag drive_bag --storage mcap --frames 40 --sensor realsense_d435
    depthgate-make-bag ring_bag --cameras front left right     # a camera ring

Its topics and what the depth on them is: depthgate_ros/tools/make_bag.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

from ..data.sensors import CHOICES as SENSOR_CHOICES
from ..data.synthetic import CAMERA_RING
from ..tools.bags import BagError
from ..tools.make_bag import make_bag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-make-bag',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('out', help='new bag directory')
    parser.add_argument('--storage', default='sqlite3', choices=('sqlite3', 'mcap'))
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--size', type=int, nargs=2, default=[128, 256], metavar=('H', 'W'))
    parser.add_argument('--fps', type=float, default=10.0)
    parser.add_argument('--depth-encoding', default='32FC1', choices=('32FC1', '16UC1'))
    parser.add_argument('--depth-frames', type=int, default=None,
                        help='depth and disparity only for the first N frames')
    parser.add_argument('--sensor', default='stereo', choices=SENSOR_CHOICES,
                        help='the depth sensor the bag records (exact: the render itself)')
    parser.add_argument('--cameras', nargs='+', default=['camera'],
                        choices=('camera', *CAMERA_RING), metavar='NAME',
                        help="cameras looking their own ways, each under /NAME/: 'camera' "
                        f"(ahead, the default) or {', '.join(CAMERA_RING)}")
    args = parser.parse_args(argv)
    try:
        path = make_bag(Path(args.out), args.frames, args.seed, tuple(args.size), args.fps,
                        args.storage, args.depth_encoding, args.depth_frames, args.sensor,
                        tuple(args.cameras))
    except (BagError, ValueError) as e:      # ValueError: a drive the street cannot hold
        print(f'depthgate-make-bag: {e}', file=sys.stderr)
        return 2
    print(f'wrote {path} ({args.storage}, {args.frames} frames)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
