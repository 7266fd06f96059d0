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
A camera and a listener in their own processes, for what crosses DDS between processes.

    python -m depthgate_ros.tools.camera_probe camera --size 480 640 --rate 5 --count 50
    python -m depthgate_ros.tools.camera_probe listen --seconds 15

`camera` publishes rgb8 images (optionally with 32FC1 depth on `depth`) on `image` (or
`<prefix>image`: one camera of a ring), stamped at the camera period from a fixed start as a
driver stamps them, and prints {"sent": N, ...} as JSON. `listen` counts what arrives on
`image` and what DDS reports lost, and prints {"received": N, "lost": M}. The benchmark's
transport table and the node tests use them; `depthgate_ros.tools.dds.ros_environment` sets up
their environment.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

NS = 1_000_000_000


def camera(args, player) -> dict:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ..node.image_codec import array_to_msg
    h, w = args.size
    rng = np.random.default_rng(0)
    # noise costs the encoder nothing and defeats no compression: the transport sees the
    # full frame size
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    depth = np.linspace(2.0, 40.0, h, dtype=np.float32)[:, None].repeat(w, 1)
    reliable = args.reliability == 'reliable'
    pub = player.publisher(Image, args.prefix + 'image', reliable, depth=5)
    depth_pub = player.publisher(Image, args.prefix + 'depth', reliable, depth=5) \
        if args.depth_every else None
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and pub.get_subscription_count() < args.subscribers:
        time.sleep(0.05)
    time.sleep(args.settle)
    msgs = [array_to_msg(f, 'rgb8', Header(frame_id='camera_optical')) for f in frames]
    depth_msg = array_to_msg(depth, '32FC1', Header(frame_id='camera_optical'))
    start_ns, period_ns = args.first_stamp * NS, round(NS / args.rate)
    if args.wall_stamps:             # a listener on this machine can time publish-to-received
        start_ns = time.time_ns()
    t0 = time.monotonic()
    for i in range(args.count):
        # a driver stamps at capture, on the camera's clock: regular, whatever the jitter of
        # this process's publishing
        stamp = start_ns + i * period_ns
        sec, nsec = divmod(stamp, NS)
        if depth_pub is not None and i % args.depth_every == 0:
            depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec = sec, nsec
            depth_pub.publish(depth_msg)
        msg = msgs[i % len(msgs)]
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
        pub.publish(msg)
        time.sleep(max(0.0, t0 + (i + 1) * period_ns / NS - time.monotonic()))
    time.sleep(args.linger)          # let reliable writers finish before the process goes
    return {'sent': args.count, 'first_stamp_ns': start_ns, 'period_ns': period_ns,
            'matched': pub.get_subscription_count(), 'seconds': time.monotonic() - t0}


def listen(args, player) -> dict:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ..node.compat import SubscriptionEventCallbacks
    got, lost = [], [0]

    def on_lost(event):
        lost[0] = max(lost[0], event.total_count)
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if
                     args.reliability == 'reliable' else ReliabilityPolicy.BEST_EFFORT)
    player.peer.create_subscription(
        Image, 'image', lambda m: got.append(m.header.stamp.sec), qos,
        event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))
    time.sleep(args.seconds)
    return {'received': len(got), 'lost': lost[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='camera_probe',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('role', choices=('camera', 'listen'))
    parser.add_argument('--size', type=int, nargs=2, default=[480, 640], metavar=('H', 'W'))
    parser.add_argument('--rate', type=float, default=5.0, help='Hz')
    parser.add_argument('--count', type=int, default=50)
    parser.add_argument('--reliability', choices=('best_effort', 'reliable'),
                        default='best_effort')
    parser.add_argument('--depth-every', type=int, default=0,
                        help='also publish depth with every Nth image (0: never)')
    parser.add_argument('--first-stamp', type=int, default=1_700_000_000, help='seconds')
    parser.add_argument('--wall-stamps', action='store_true',
                        help='stamps from the wall clock at the start (not --first-stamp)')
    parser.add_argument('--subscribers', type=int, default=1,
                        help='wait for this many image subscribers before sending')
    parser.add_argument('--wait', type=float, default=30.0, help='max wait for them, s')
    parser.add_argument('--settle', type=float, default=1.0,
                        help='then wait this long for the reverse discovery, s')
    parser.add_argument('--linger', type=float, default=1.0, help='wait after the last, s')
    parser.add_argument('--seconds', type=float, default=15.0, help='listen: how long')
    parser.add_argument('--prefix', default='',
                        help="camera: topic names' start, e.g. 'front/' for front/image")
    args = parser.parse_args(argv)
    from .player import Player
    with Player(f'camera_probe_{args.role}') as player:
        result = (camera if args.role == 'camera' else listen)(args, player)
    print(json.dumps(result), flush=True)
    return 0


def start(role: str, env: dict, **options) -> subprocess.Popen:
    """Start this module in its own process, e.g. as ("camera", env, size=(480, 640), rate=5)."""
    args = [sys.executable, '-m', 'depthgate_ros.tools.camera_probe', role]
    for key, value in options.items():
        flag = '--' + key.replace('_', '-')
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, *map(str, value)]
        elif value is not False and value is not None:
            args += [flag, str(value)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


def result(proc, timeout: float = 300) -> dict:
    """Return the JSON line a started probe printed, once it has finished."""
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f'camera_probe exited with {proc.returncode}: {out}')
    return json.loads(out.strip().splitlines()[-1])


if __name__ == '__main__':
    sys.exit(main())
