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
depthgate-bench: latency, FLOPs, memory and the node pipeline, measured in one run.

    depthgate-bench --out bench/                 # the full run behind docs/performance.md
    depthgate-bench --quick --out /tmp/bench     # seconds; what the test suite runs
    depthgate-bench --only models --compare NAME=CHECKPOINT ... --out bench/
                                                 # trained models at a camera's size
    depthgate-bench --only cameras --cameras 3 --out bench/
                                                 # one node for 3 cameras vs 3 nodes

Writes `bench.json` (every figure, with the machine) and `bench.md` (the tables). Each
latency is the median and p95 of repeated runs after warm-up, all in this one process, next
to the machine's own fp32 GEMM peak measured at the start, so ratios are comparable even
when the absolute speed of a shared machine is not.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import json
from pathlib import Path
import sys

import torch

from ..tools.bench import (bench_nodes, cameras_section, count_flops, FULL, gemm_peak,
                           machine, machine_line, markdown, MODEL_ROUNDS, node_section, QUICK,
                           run, Settings, table, timed_together, transport_table)
from ..weights import bundled_checkpoint, resolve_model


def _ros_only(args, s: Settings) -> int:
    from ..tools.bench_node import bench_cameras, bench_transport, lifecycle_memory, soak
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.soak:
        path = str(bundled_checkpoint())
        r = soak(path, args.soak)
        lines = [f"# Soak: {r['seconds']:.0f} s, {r['size']} at {r['rate_hz']:.0f} Hz with "
                 'depth, large-image profile, bundled model, default parameters', '',
                 f"sent {r['sent']}, received {r['received']}, processed {r['processed']}, "
                 f"replaced {r['replaced']}, lost in transport {r['lost_in_transport']}, "
                 f"missed by stamps {r['missed_by_stamps']}; processed + dropped = "
                 f"**{r['accounted']}** of {r['sent']} sent", '',
                 f"RSS after the first minute: median {r['rss_first_half_mib']:.0f} MiB in "
                 f"the first half, {r['rss_second_half_mib']:.0f} MiB in the second: growth "
                 f"**{100 * r['rss_growth_halves']:.2f}%**; straight-line fit "
                 f"{r['rss_slope_mib_per_min']:.2f} MiB/min = "
                 f"{100 * r['rss_growth_fit']:.2f}% over the span; peak "
                 f"{r['rss_max_mib']:.0f} MiB", '',
                 f"errors {r['errors']}; log: {r['log_lines']} lines, {r['log_warnings']} "
                 f"warnings or errors; exit code {r['exit_code']}", '']
        (out / 'soak.json').write_text(json.dumps(r, indent=2))
    elif args.only == 'lifecycle':
        r = lifecycle_memory(str(bundled_checkpoint()))
        lines = ['# perception_lifecycle_node: RSS through configure / cleanup (bundled model, '
                 'CPU, 480x640)', '', '| step | RSS (MiB) |', '|---|---|']
        lines += [f"| {row['step']} | {row['rss_mib']:.0f} |" for row in r['steps']]
        lines += ['', 'returned by each cleanup: ' + ', '.join(
            f'{v:.0f}' for v in r['returned_by_cleanup_mib']) + ' MiB; after the last '
            f"cleanup vs the first: {r['growth_over_cycles_mib']:+.0f} MiB", '']
        (out / 'lifecycle.json').write_text(json.dumps(r, indent=2))
    elif args.only == 'transport':
        rows = bench_transport(s.camera_sizes, ('best_effort', 'reliable'), (False, True),
                               s.transport_frames, rate=5.0)
        lines = transport_table(rows)
        (out / 'transport.json').write_text(json.dumps(rows, indent=2))
    else:
        if args.inference_size:
            s = replace(s, size=tuple(args.inference_size))
        m, path = machine(), str(resolve_model(args.model))
        rows = bench_nodes(path, s) if args.only == 'node' else []
        ring = bench_cameras(path, args.cameras, s.camera_sizes[0], args.camera_rate,
                             args.camera_seconds) if args.cameras else None
        lines = [f'{machine_line(m)}; model {args.model}', ''] + node_section(rows) + (
            cameras_section(ring) if ring else [])
        (out / f'{args.only}.json').write_text(json.dumps(
            {'machine': m, 'rows': rows, 'cameras': ring}, indent=2))
    (out / f"{'soak' if args.soak else args.only}.md").write_text('\n'.join(lines))
    print('\n'.join(lines))
    return 0


def _models_only(args, s: Settings) -> int:
    from ..tools.bench_models import bench_models, COLUMNS, summary
    entries = [('default', 'default'), ('fast', 'fast')]
    for spec in args.compare:
        name, sep, path = spec.partition('=')
        if not sep or not name or not path:
            print(f'depthgate-bench: --compare takes NAME=CHECKPOINT, got {spec!r}',
                  file=sys.stderr)
            return 2
        entries.append((name, path))
    try:
        sizes = [tuple(int(v) for v in size.split('x')) for size in args.sizes]
    except ValueError:
        print(f'depthgate-bench: --sizes takes HxW, got {args.sizes}', file=sys.stderr)
        return 2
    if args.quick:
        sizes, args.eval_frames = [(64, 96)], min(args.eval_frames, 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {'machine': machine(), 'gemm': gemm_peak(s.gemm_n, s)}
    result['models'] = bench_models(entries, sizes, args.eval_frames, result['gemm']['gflops'],
                                    timed_together, count_flops,
                                    s.repeats if args.quick else MODEL_ROUNDS, s.warmup,
                                    int8=not args.no_onnx, compile_=not args.quick)
    m = result['machine']
    lines = ['# Trained models at camera size', '',
             f"{machine_line(m)} ({m['torch_threads']} threads); fp32 peak "
             f"{result['gemm']['gflops']:.0f} GFLOP/s; mIoU and delta1 on "
             f'{args.eval_frames} held-out frames', '']
    lines += table(result['models'], COLUMNS) + summary(result['models'])
    (out / 'models.json').write_text(json.dumps(result, indent=2))
    (out / 'models.md').write_text('\n'.join(lines))
    print('\n'.join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-bench',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out', default='bench')
    parser.add_argument('--quick', action='store_true', help='tiny sizes, few repeats')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--no-node', action='store_true', help='skip the rclpy pipeline')
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the ONNX Runtime rows (fp32 and int8)')
    parser.add_argument('--only',
                        choices=('transport', 'node', 'cameras', 'lifecycle', 'models'),
                        help='only the images-across-processes table, only the node rows '
                             '(with the camera ring), only the camera ring, only the '
                             'lifecycle node memory through configure / cleanup, or only '
                             'trained models side by side (bench_models.py)')
    parser.add_argument('--cameras', type=int, default=3,
                        help='--only node / cameras: cameras in the ring (0: no ring)')
    parser.add_argument('--camera-rate', type=float, default=15.0,
                        help='--only node / cameras: Hz of each camera of the ring')
    parser.add_argument('--camera-seconds', type=float, default=20.0,
                        help='--only node / cameras: how long the ring runs per setup')
    parser.add_argument('--model', default='default',
                        help='--only node: the model the node runs (a bundled name or a path)')
    parser.add_argument('--inference-size', type=int, nargs=2, metavar=('H', 'W'),
                        help="--only node: the node's inference size (default: the bench's)")
    parser.add_argument('--compare', nargs='*', default=[], metavar='NAME=CHECKPOINT',
                        help='--only models: trained checkpoints beside default and fast')
    parser.add_argument('--sizes', nargs='+', default=['480x640'], metavar='HxW',
                        help='--only models: input sizes')
    parser.add_argument('--eval-frames', type=int, default=100,
                        help='--only models: held-out frames scored per row')
    parser.add_argument('--soak', type=float, metavar='SECONDS',
                        help='only a soak of the node (bundled model, 640x480 at 5 Hz with '
                        'depth, the large-image profile) for this long')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    s = QUICK if args.quick else FULL
    if args.only == 'models':
        return _models_only(args, s)
    if args.only or args.soak:
        return _ros_only(args, s)
    result = run(s, args.quick, args.no_onnx, args.no_node)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'bench.json').write_text(json.dumps(result, indent=2))
    (out / 'bench.md').write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
