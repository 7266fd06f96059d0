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
depthgate-bag-eval: numbers and pictures from a rosbag2 recording.

    depthgate-bag-eval BAG --list                                  # topics and types
    depthgate-bag-eval BAG --out report_dir [--checkpoint m.pt] [--labels /camera/labels]
    depthgate-bag-eval BAG --out report_dir --realtime [--rate 1.0] [--node /perception_node]
    depthgate-bag-eval BAG --out report_dir --cameras /front /left /right    # a camera ring

What offline and realtime mode measure: depthgate_ros/tools/bag_eval.py. The report folder
is written to a temporary name and renamed at the end: a failed run leaves nothing
half-written.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

from ..files import staged_folder
from ..model.checkpoint import CheckpointError
from ..node.image_codec import ImageDecodeError
from ..options import (add_arguments, check_args, from_args, PairingOptions,
                       PredictorOptions)
from ..tools.bag_eval import (latency_histogram, offline, offline_cameras, realtime, Window,
                              write_markdown)
from ..tools.bags import ACCEPTED, BagError, choose_topics, describe, open_bag
from ..weights import bundled_checkpoint

ROLES = ('image', 'depth', 'disparity', 'camera_info', 'labels')     # a camera's topics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-bag-eval',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('bag', nargs='+', help=f'the recording: {ACCEPTED}')
    parser.add_argument('--list', action='store_true', help='list topics and exit')
    parser.add_argument('--out', default='bag_report')
    parser.add_argument('--checkpoint', help='model (default: the bundled model)')
    for role in ROLES:
        parser.add_argument(f"--{role.replace('_', '-')}", dest=role, default=None,
                            help=f'{role} topic (default: found by type)')
    parser.add_argument('--cameras', nargs='+', metavar='NAMESPACE',
                        help='several cameras, each found by type under its namespace '
                             '(/front: /front/image_raw, ...) and reported under its name; '
                             'realtime: into one node serving them as cameras of those names')
    parser.add_argument('--max-depth', type=float, default=None,
                        help='leave sensor depth beyond this many metres out of the depth '
                             'metrics')
    parser.add_argument('--panels', type=int, default=6, help='PNG panels to write')
    parser.add_argument('--start', type=float, default=0.0,
                        help='offline: evaluate from this many seconds after the recording starts')
    parser.add_argument('--duration', type=float, default=None,
                        help='offline: evaluate this many seconds (default: to the end)')
    parser.add_argument('--every', type=int, default=1,
                        help='offline: every Nth image of the window (long drives)')
    parser.add_argument('--write-bag', action='store_true',
                        help='also write the outputs as a rosbag2 in the report folder')
    parser.add_argument('--storage', default='mcap', choices=('mcap', 'sqlite3'),
                        help='storage of the --write-bag outputs (default: %(default)s)')
    parser.add_argument('--realtime', action='store_true')
    parser.add_argument('--rate', type=float, default=1.0, help='realtime playback rate')
    parser.add_argument('--node', default='/perception_node', help='realtime: node name')
    parser.add_argument('--wait', type=float, default=5.0,
                        help='realtime: seconds to wait for outputs after the last message')
    add_arguments(parser, PredictorOptions)
    add_arguments(parser, PairingOptions)
    args = parser.parse_args(argv)
    check_args(parser, args, PredictorOptions, PairingOptions)
    if args.start < 0 or (args.duration is not None and args.duration <= 0) or args.every < 1:
        parser.error('--start must be >= 0, --duration > 0 and --every >= 1')
    if args.cameras and (given := [r for r in ROLES if getattr(args, r)]):
        parser.error(f"--{given[0].replace('_', '-')} names one topic: with --cameras each "
                     "camera's topics are found under its namespace")

    out = Path(args.out)
    try:
        reader = open_bag(*args.bag)
        if args.list:
            print(describe(reader))
            return 0
        # one camera (''), or a ring: name -> its topics
        cameras = {space.strip('/').replace('/', '_'): choose_topics(reader, under=space)
                   for space in args.cameras} if args.cameras else {
            '': choose_topics(reader, *(getattr(args, r) for r in ROLES))}
        with staged_folder(out) as work:
            if args.realtime:
                report = realtime(reader, cameras, rate=args.rate, node_name=args.node,
                                  wait_s=args.wait)
            else:
                model = args.checkpoint or bundled_checkpoint()
                if model is None:
                    raise CheckpointError('no model: pass --checkpoint (no bundled model)')
                predictor = from_args(PredictorOptions, args).load(model)
                options = {'pairing': from_args(PairingOptions, args), 'panels': args.panels,
                           'storage': args.storage, 'max_depth': args.max_depth,
                           'window': Window(args.start, args.duration, args.every)}
                out_bag = work / 'outputs' if args.write_bag else None
                report = offline(reader, cameras[''], predictor, work, out_bag=out_bag,
                                 **options) if '' in cameras else offline_cameras(
                    reader, cameras, predictor, work, out_bag, **options)
                report['checkpoint'] = str(model)
                report['depth_cap_m'] = args.max_depth
            report['bag'] = [str(p) for p in args.bag]
            (work / 'report.json').write_text(json.dumps(report, indent=2))
            write_markdown(report, work / 'report.md')
            latency_histogram(report['latencies_ms'], work / 'latency_histogram.png',
                              f"{report['mode']} latency")
    except (BagError, CheckpointError, ImageDecodeError, ValueError) as e:
        print(f'depthgate-bag-eval: {e}', file=sys.stderr)
        return 2
    finally:
        if 'reader' in locals():
            reader.close()
    print(f'report written to {out}/')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
