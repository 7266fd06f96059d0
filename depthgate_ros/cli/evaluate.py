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
depthgate-eval: a checkpoint on a dataset split; metrics per loop, depth metrics, pictures.

    depthgate-eval --checkpoint model.pt --dataset synthetic --split val --out eval_out
    depthgate-eval --checkpoint model.pt --dataset cityscapes --root /data/cityscapes \
        --split val --tta-flip --tta-scales 0.75 1 1.25 --depth-blur-sigma 2

Writes metrics.json, metrics.md (a table per loop) and grid.png (image, ground truth, the
prediction of every loop, predicted depth, gate map: the layout of the paper's Figures 5/7)
into a new --out folder, which appears only once all of it is written.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
import sys

import numpy as np

from ..data.cityscapes import DatasetError
from ..data.sensors import CHOICES as SENSOR_CHOICES
from ..evaluation import evaluate_dataset
from ..files import FolderExists, staged_folder
from ..model.checkpoint import CheckpointError
from ..options import add_arguments, check_args, from_args, PredictorOptions
from ..training.config import CAMERA_KEYS, DataConfig, DATASETS
from ..training.datasets import build_dataset
from ..visualize import colorize_depth, colorize_gate, colorize_labels, palette, panel, write_png


def markdown_table(result: dict, title: str) -> str:
    loops = sorted(k for k in result if k.startswith('loop'))
    cap = result.get('depth_cap_m')
    rmse = 'RMSE (m)' if cap is None else f'RMSE (m, <= {cap:g} m)'
    lines = [f'### {title}', '',
             f'| output | mIoU | pixel acc. | iIoU | depth delta1 | AbsRel | {rmse} |',
             '|---|---|---|---|---|---|---|']
    for k in loops:
        r, d = result[k], result[k]['depth']
        cells = [r['miou'], r['pixel_accuracy'], r['miiou'], d['delta1'], d['abs_rel'], d['rmse']]
        lines.append(f'| {k} | ' + ' | '.join('-' if v is None or (isinstance(v, float) and
                                                                   math.isnan(v)) else f'{v:.3f}'
                                              for v in cells) + ' |')
    lat = result.get('latency_ms', {})
    lines += ['', f"{result['frames']} frames, gate: {result['gate_source']}, latency p50 "
              f"{lat.get('p50', float('nan')):.0f} ms / p95 {lat.get('p95', float('nan')):.0f} ms"]
    final = result['final']
    lines += ['', '| class (final output) | IoU | recall | precision |', '|---|---|---|---|']
    lines += [f'| {name} | ' + ' | '.join('-' if math.isnan(v) else f'{v:.3f}' for v in (
        iou, final['recall'][name], final['precision'][name])) + ' |'
        for name, iou in final['iou'].items()]
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-eval',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--dataset', default='synthetic', choices=DATASETS)
    parser.add_argument('--root', help='dataset root (not needed for synthetic)')
    parser.add_argument('--split', default='val')
    parser.add_argument('--synthetic-frames', type=int, default=50,
                        help='synthetic val frames (held-out seeds)')
    parser.add_argument('--synthetic-size', type=int, nargs=2, default=[128, 256],
                        metavar=('H', 'W'))
    parser.add_argument('--max-frames', type=int, default=None)
    parser.add_argument('--out', default='eval_output')
    parser.add_argument('--synthetic-camera', nargs='+', default=[], metavar='KEY=VALUE',
                        help='synthetic: another camera, e.g. fx_scale=0.6 or height_m=2.2 '
                             'pitch_deg=8 (keys: ' + ', '.join(CAMERA_KEYS) + ')')
    parser.add_argument('--sensor-depth', nargs='?', const='exact', default=None,
                        choices=SENSOR_CHOICES,
                        help="give the gate depth: exact ground truth (the paper's gt-depth "
                             'rows; the default when the flag has no value), or what a sensor '
                             'measures of it: rgbd, stereo or a preset (docs/sensors.md)')
    parser.add_argument('--max-depth', type=float, default=None,
                        help='leave ground truth beyond this many metres out of the depth '
                             'metrics (80 is the usual cap on driving data)')
    parser.add_argument('--grid-frames', type=int, default=4, help='rows in grid.png')
    # several gate sources: each on the same frames, compared in compare.md
    add_arguments(parser, PredictorOptions, several=('gate_source',))
    args = parser.parse_args(argv)
    check_args(parser, args, PredictorOptions)
    logging.basicConfig(level=logging.WARNING, format='[%(levelname)s] %(name)s: %(message)s')

    try:
        predictor = from_args(PredictorOptions, args, gate_source='auto').load(args.checkpoint)
        camera = _key_values(args.synthetic_camera, CAMERA_KEYS)
        data_cfg = DataConfig(dataset=args.dataset, root=args.root, val_split=args.split,
                              synthetic_val_frames=args.synthetic_frames,
                              image_size=list(args.synthetic_size), synthetic_camera=camera)
        dataset = build_dataset(data_cfg, args.split)
    except (CheckpointError, DatasetError, ValueError) as e:
        print(f'depthgate-eval: {e}', file=sys.stderr)
        return 2

    # a dataset with classes of its own (CamVid, a labelled folder) shows them in its colours
    lut = palette(predictor.info.colors)
    truth_lut = palette(dataset.colors) if getattr(dataset, 'covers', None) is not None else lut
    pictures = _Pictures(lut, truth_lut, args.grid_frames, args.sensor_depth)
    gates = [None if g == 'auto' else g for g in args.gate_source]
    if len(gates) > 1:          # every gate on the same frames: render them once
        n = len(dataset) if args.max_frames is None else min(args.max_frames, len(dataset))
        dataset = [dataset[i] for i in range(n)]
    try:
        with staged_folder(args.out) as out:
            _evaluate_gates(predictor, dataset, gates, args, out, pictures)
    except FolderExists as e:
        print(f'depthgate-eval: {e}', file=sys.stderr)
        return 2
    return 0


class _Pictures:
    """The first frames' panels (grid.png) and, over several gates, each gate per frame."""

    def __init__(self, lut, truth_lut, frames: int, sensor: str | None):
        self.lut, self.truth_lut = lut, truth_lut
        self.frames, self.sensor = frames, sensor
        self.rows: list[np.ndarray] = []
        self.gate_rows: dict[int, tuple[list, list]] = {}

    def __call__(self, i: int, sample: dict, preds: list) -> None:
        if i >= self.frames:
            return
        final = preds[-1]
        if 'sensor_depth' in sample:
            row = self.gate_rows.setdefault(i, ([sample['rgb'], colorize_depth(
                sample['sensor_depth'])], ['image', f'{self.sensor} depth (white: none)']))
            if final.gate is not None:
                row[0].append(colorize_gate(final.gate))
                row[1].append(f'{final.gate_source} gate')
        images = [sample['rgb'], colorize_labels(sample['labels'], self.truth_lut)]
        titles = ['image', 'ground truth']
        for p in preds:
            images.append(colorize_labels(p.labels, self.lut))
            titles.append(f'loop {p.loops}')
        if final.depth is not None:          # a peer (model/peers.py) predicts no depth
            images.append(colorize_depth(final.depth))
            titles.append('predicted depth')
        if final.gate is not None:
            images.append(colorize_gate(final.gate))
            titles.append(f'gate ({final.gate_source})')
        self.rows.append(panel(images, titles, width=256))

    def write_grid(self, path: Path) -> None:
        """Write the panels drawn since the last call (one gate's run)."""
        if self.rows:
            write_png(path, np.concatenate(self.rows, 0))
            self.rows.clear()

    def write_gates(self, path: Path) -> None:
        if self.gate_rows:
            write_png(path, np.concatenate([panel(images, titles, width=256)
                                            for images, titles in self.gate_rows.values()], 0))


def _evaluate_gates(predictor, dataset, gates: list, args, out: Path,
                    pictures: _Pictures) -> None:
    """Evaluate with each gate; write metrics, tables and pictures per gate and compared."""
    title = f'{args.dataset} {args.split}'
    results = {}
    for gate in gates:
        result = evaluate_dataset(predictor, dataset, gate=gate, sensor_depth=args.sensor_depth,
                                  max_frames=args.max_frames, max_depth=args.max_depth,
                                  on_frame=pictures)
        result['checkpoint'] = str(args.checkpoint)
        result['settings'] = {k: v for k, v in vars(args).items() if k != 'checkpoint'}
        results[gate or 'default'] = result
        suffix = '' if len(gates) == 1 else f'_{gate}'
        (out / f'metrics{suffix}.json').write_text(json.dumps(result, indent=2))
        (out / f'metrics{suffix}.md').write_text(markdown_table(result, title))
        pictures.write_grid(out / f'grid{suffix}.png')
        print(markdown_table(result, f'{title}, gate {gate or "default"}'))
    if len(gates) > 1:
        (out / 'compare.md').write_text(compare_table(results, args))
        print(compare_table(results, args))
        pictures.write_gates(out / 'gates.png')


def compare_table(results: dict, args) -> str:
    """One row per gate, final loop, on the same frames."""
    first = next(iter(results.values()))
    lines = ['| gate (used) | mIoU | pixel acc. | iIoU | depth delta1 |', '|---|---|---|---|---|']
    for gate, r in results.items():
        f = r['final']
        lines.append(f"| {gate} ({r['gate_source']}) | {f['miou']:.3f} | "
                     f"{f['pixel_accuracy']:.3f} | {f['miiou']:.3f} | "
                     f"{f['depth']['delta1']:.3f} |")
    camera = ' '.join(args.synthetic_camera) or 'training camera'
    sensor = args.sensor_depth or 'none'
    if first['sensor_valid_fraction'] is not None:
        sensor += f", valid on {first['sensor_valid_fraction']:.1%} of the pixels"
    lines += ['', f"{first['frames']} {args.dataset} {args.split} frames ({camera}), "
              f'sensor depth: {sensor}']
    return '\n'.join(lines) + '\n'


def _key_values(items: list[str], known: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or key not in known:
            raise ValueError(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
        out[key] = float(value)
    return out


if __name__ == '__main__':
    raise SystemExit(main())
