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

The exported graph takes a normalised image (N, 3, H, W; any N, H, W divisible by 8 is
best) and, for the sensor and hybrid gates, sensor depth (N, 1, H, W, metres, NaN invalid).
It returns every loop's class logits, log depth and gate (`seg_<l>`, `log_depth_<l>`,
`gate_<l>`), so the anytime outputs stay available. The gate source, the loop count and
`--hard-gate` are fixed at export. Model info and config travel in the file's metadata (ONNX
metadata_props, TorchScript extra file `depthgate.json`), so
`Predictor.from_checkpoint(model.onnx)` runs it.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
import json
import logging
from pathlib import Path
import sys
import warnings

import numpy as np
import torch
from torch import nn

from .model.checkpoint import CheckpointError, load_checkpoint, ModelInfo
from .model.config import DEPTH_GATES, GATE_SOURCES
from .model.network import DepthGatedNet
from .onnx_backend import METADATA_KEY

log = logging.getLogger('depthgate_ros.export')


class ExportWrapper(nn.Module):
    """The network with its run-time choices (gate, loops) frozen, returning a flat tuple."""

    def __init__(self, model: DepthGatedNet, gate: str, loops: int):
        super().__init__()
        self.model, self.gate, self.loops = model, gate, loops

    def forward(self, image: torch.Tensor, depth: torch.Tensor | None = None):
        outs = self.model(image, depth, loops=self.loops, gate=self.gate)
        flat = []
        for o in outs:
            flat += [o['seg'], o['log_depth']] + ([o['gate']] if o['gate'] is not None else [])
        return tuple(flat)


def output_names(model: DepthGatedNet, loops: int) -> list[str]:
    gated = model.cfg.gate_source != 'none'
    return [name for loop in range(loops + 1)
            for name in ([f'seg_{loop}', f'log_depth_{loop}']
                         + ([f'gate_{loop}'] if gated else []))]


def metadata(model: DepthGatedNet, info: ModelInfo, gate: str, loops: int) -> str:
    return json.dumps({'config': model.cfg.to_dict(), 'info': asdict(info), 'gate': gate,
                       'loops': loops, 'hard_gate': bool(model.hard_gate)})


def _prepare(model: DepthGatedNet, gate: str | None, loops: int | None, hard_gate: bool):
    model = model.eval()
    model.hard_gate = hard_gate
    gate = model.resolve_gate(gate, have_depth=True)
    loops = model.cfg.loops if loops is None else loops
    return ExportWrapper(model, gate, loops).eval(), gate, loops


def _example(size, gate: str):
    torch.manual_seed(0)
    image = torch.randn(1, 3, *size)
    depth = None
    if gate in DEPTH_GATES:
        depth = torch.rand(1, 1, *size) * 40 + 1
        depth[..., : size[1] // 3] = float('nan')     # a sensor's holes, for the hybrid gate
    return image, depth


def export_onnx(model: DepthGatedNet, info: ModelInfo, path: str | Path, *,
                gate: str | None = None, loops: int | None = None, hard_gate: bool = False,
                size=(256, 512), opset: int = 18) -> Path:
    import onnx
    if opset < 17:
        raise ValueError(f'opset {opset}: the exporter needs 17 or newer')
    wrapper, gate, loops = _prepare(model, gate, loops, hard_gate)
    image, depth = _example(size, gate)
    args = (image,) if depth is None else (image, depth)
    n, h, w = torch.export.Dim('batch', max=256), torch.export.Dim.AUTO, torch.export.Dim.AUTO
    dynamic = {'image': {0: n, 2: h, 3: w}}
    if depth is not None:
        dynamic['depth'] = {0: n, 2: h, 3: w}
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp')
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.onnx.export(
            wrapper, args, dynamo=True, opset_version=opset, dynamic_shapes=dynamic,
            input_names=['image'] + (['depth'] if depth is not None else []),
            output_names=output_names(wrapper.model, loops), verbose=False)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata(wrapper.model, info, gate, loops)
    onnx.save(proto, tmp)
    tmp.replace(path)                        # never a half-written model file
    return path


def export_torchscript(model: DepthGatedNet, info: ModelInfo, path: str | Path, *,
                       gate: str | None = None, loops: int | None = None,
                       hard_gate: bool = False, size=(256, 512)) -> Path:
    """
    Write a traced TorchScript module.

    torch.jit.trace is deprecated upstream but still what C++ libtorch deployments load; sizes
    other than the traced one work because no shape is baked in.
    """
    wrapper, gate, loops = _prepare(model, gate, loops, hard_gate)
    image, depth = _example(size, gate)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(wrapper, (image,) if depth is None else (image, depth),
                                 check_trace=False)
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp')
    torch.jit.save(traced, str(tmp), _extra_files={
        f'{METADATA_KEY}.json': metadata(wrapper.model, info, gate, loops)})
    tmp.replace(path)
    return path


def parity(model: DepthGatedNet, run_exported, *, gate: str, loops: int, size) -> dict:
    """
    Max |difference| of every loop's logits and log depth.

    Exported vs eager, on a new input of another size than the export example.
    """
    wrapper = ExportWrapper(model.eval(), gate, loops).eval()
    image, depth = _example((size[0] + 16, size[1] + 32), gate)
    with torch.no_grad():
        ref = wrapper(image, depth)
    got = run_exported(image, depth)
    names = output_names(model, loops)
    return {n: float(np.abs(np.asarray(g) - r.numpy()).max())
            for n, g, r in zip(names, got, ref) if not n.startswith('gate')}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-export',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('--onnx', help='write an ONNX file here')
    parser.add_argument('--torchscript', help='write a TorchScript file here')
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
    try:
        model, info, _ = load_checkpoint(args.checkpoint)
        gate = model.resolve_gate(args.gate, have_depth=True)
        loops = model.cfg.loops if args.loops is None else args.loops
        opts = {'gate': gate, 'loops': loops, 'hard_gate': args.hard_gate,
                'size': tuple(args.size)}
        if args.onnx:
            path = export_onnx(model, info, args.onnx, opset=args.opset, **opts)
            print(f'{path}: {path.stat().st_size / 2**20:.1f} MiB (ONNX opset {args.opset})')
            if args.check:
                from .onnx_backend import OnnxModel
                net = OnnxModel(path)
                print('ONNX Runtime parity (max abs diff):',
                      parity(model, net.run_flat, gate=gate, loops=loops, size=args.size))
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
