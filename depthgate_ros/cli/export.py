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
depthgate-export: a checkpoint as ONNX (for ONNX Runtime / TensorRT) and TorchScript.

    depthgate-export model.pt --onnx model.onnx --torchscript model.ts --check
    depthgate-export model.pt --onnx model.onnx --int8 model.int8.onnx --check

What the exported graph takes and returns: depthgate_ros/export.py. `--check` compares its
outputs with PyTorch eager on a random input, and for `--int8` the labels on rendered frames.
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from ..export import export_onnx, export_torchscript, label_agreement, parity, quantize_int8
from ..model.checkpoint import CheckpointError, load_checkpoint
from ..model.config import GATE_SOURCES
from ..model.interface import require_gate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-export',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('--onnx', help='write an ONNX file here')
    parser.add_argument('--torchscript', help='write a TorchScript file here')
    parser.add_argument('--int8', metavar='PATH',
                        help='also write the ONNX graph statically quantised to int8 (QDQ, '
                             'calibrated on rendered street frames at --size); needs --onnx')
    parser.add_argument('--calibration-frames', type=int, default=16,
                        help='frames that calibrate the int8 activation ranges')
    parser.add_argument('--gate', default=None, choices=GATE_SOURCES[1:],
                        help="the gate fixed in the graph (default: the model's)")
    parser.add_argument('--loops', type=int, default=None)
    parser.add_argument('--hard-gate', action='store_true',
                        help='argmax of predicted depth as the gate (dense in the graph)')
    parser.add_argument('--size', type=int, nargs=2, default=[256, 512], metavar=('H', 'W'),
                        help='example input size (the graph accepts others)')
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--check', action='store_true',
                        help='compare the exported outputs with PyTorch eager')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(name)s: %(message)s')
    if not (args.onnx or args.torchscript):
        parser.error('nothing to do: give --onnx and/or --torchscript')
    if args.int8 and not args.onnx:
        parser.error('--int8 quantises the ONNX graph: give --onnx too')
    if args.calibration_frames < 1:
        parser.error('--calibration-frames must be >= 1')
    try:
        model, info, _ = load_checkpoint(args.checkpoint)
        gate = require_gate(model, args.gate or model.cfg.gate_source, have_depth=True)
        loops = model.cfg.loops if args.loops is None else args.loops
        opts = {'gate': gate, 'loops': loops, 'hard_gate': args.hard_gate,
                'size': tuple(args.size)}
        if args.onnx:
            path = export_onnx(model, info, args.onnx, opset=args.opset, **opts)
            print(f'{path}: {path.stat().st_size / 2**20:.1f} MiB (ONNX opset {args.opset})')
            if args.check:
                from ..onnx_backend import OnnxModel
                net = OnnxModel(path)
                print('ONNX Runtime parity (max abs diff):',
                      parity(model, net.run_flat, gate=gate, loops=loops, size=args.size))
            if args.int8:
                q = quantize_int8(path, args.int8, info, frames=args.calibration_frames,
                                  size=tuple(args.size))
                print(f'{q}: {q.stat().st_size / 2**20:.1f} MiB (int8, QDQ, '
                      f'{args.calibration_frames} calibration frames)')
                if args.check:
                    agree = label_agreement(model, info, q, gate=gate, loops=loops,
                                            size=tuple(args.size))
                    print(f'int8 labels equal to eager on {100 * agree:.2f}% of pixels '
                          '(4 held-out frames)')
        if args.torchscript:
            path = export_torchscript(model, info, args.torchscript, **opts)
            print(f'{path}: {path.stat().st_size / 2**20:.1f} MiB (TorchScript)')
            if args.check:
                ts = torch.jit.load(str(path))

                def run(image, depth):
                    with torch.no_grad():
                        return [t.numpy() for t in (ts(image) if depth is None
                                                    else ts(image, depth))]
                print('TorchScript parity (max abs diff):',
                      parity(model, run, gate=gate, loops=loops, size=args.size))
    except (CheckpointError, ValueError, OSError) as e:
        print(f'depthgate-export: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
