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
depthgate-synthetic: look at, time and export the synthetic perspective street scenes.

depthgate-synthetic preview --out frames.png --seeds 0 1 2
depthgate-synthetic speed --frames 20
depthgate-synthetic export ROOT --split train --count 500 --first-seed 0
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ..data.labels import CITYSCAPES_COLORS
from ..data.synthetic import Camera, export_cityscapes, render_frame
from ..visualize import colorize_depth, colorize_labels, palette, panel, write_png


def _camera(args) -> Camera:
    scale = args.width / 512
    return Camera(width=args.width, height=args.height, fx=560.0 * scale, fy=560.0 * scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-synthetic',
                                     description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p_preview = sub.add_parser('preview', help='RGB, depth and labels side by side, per seed')
    p_preview.add_argument('--out', required=True)
    p_preview.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p_speed = sub.add_parser('speed', help='frames per second of the renderer')
    p_speed.add_argument('--frames', type=int, default=20)
    p_export = sub.add_parser('export', help='write frames as a Cityscapes tree')
    p_export.add_argument('root')
    p_export.add_argument('--split', default='train')
    p_export.add_argument('--count', type=int, default=100)
    p_export.add_argument('--first-seed', type=int, default=0)
    for p in (p_preview, p_speed, p_export):
        p.add_argument('--width', type=int, default=512)
        p.add_argument('--height', type=int, default=256)
    args = parser.parse_args(argv)
    cam = _camera(args)

    if args.command == 'preview':
        lut = palette(CITYSCAPES_COLORS)
        rows = []
        for seed in args.seeds:
            f = render_frame(seed, cam)
            rows.append(panel([f.rgb, colorize_depth(f.depth), colorize_labels(f.labels, lut)],
                              [f'seed {seed}: RGB', 'depth (log scale, 2-80 m)',
                               'labels (Cityscapes train ids)'], width=args.width))
        write_png(args.out, np.concatenate(rows, 0))
        print(f'wrote {args.out}')
    elif args.command == 'speed':
        render_frame(0, cam)                               # warm-up
        times = []
        for seed in range(1, args.frames + 1):
            t0 = time.perf_counter()
            render_frame(seed, cam)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        print(f'{args.height}x{args.width}: median {med * 1e3:.0f} ms per frame, '
              f'{1 / med:.1f} frames/s over {args.frames} frames (one process)')
    else:
        stems = export_cityscapes(args.root, args.split,
                                  range(args.first_seed, args.first_seed + args.count), cam)
        print(f'wrote {len(stems)} frames to {args.root} (split {args.split})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
