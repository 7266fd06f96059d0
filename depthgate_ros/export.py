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
A checkpoint as ONNX (for ONNX Runtime / TensorRT) and TorchScript (cli/export.py runs it).

The exported graph takes a normalised image (N, 3, H, W; any N, H, W divisible by the output
stride is best) and, for the sensor and hybrid gates, sensor depth (N, 1, H, W, metres, NaN
invalid). It returns every loop's class logits, log depth and gate (`seg_<l>`, `log_depth_<l>`,
`gate_<l>`) at the network's own resolution (stride 8, or the output stride for a model without
a detail path), so the anytime outputs stay available and the caller upsamples once what it
uses (the Predictor does). The gate source, the loop count and `--hard-gate` are fixed at
export. Model info and config travel in the file's metadata (ONNX metadata_props, TorchScript
extra file `depthgate.json`), so `Predictor.from_checkpoint(model.onnx)` runs it.

`quantize_int8` turns an exported ONNX file into ONNX Runtime's static int8 form (QDQ nodes,
activation ranges calibrated on rendered street frames).
"""
from __future__ import annotations

from dataclasses import asdict
import json
import logging
from pathlib import Path
import warnings

import numpy as np
import torch
from torch import nn

from .model.checkpoint import ModelInfo
from .model.config import DEPTH_GATES
from .model.interface import require_gate
from .model.network import DepthGatedNet
from .onnx_backend import METADATA_KEY

log = logging.getLogger('depthgate_ros.export')


class ExportWrapper(nn.Module):
    """The network with its run-time choices (gate, loops) frozen, returning a flat tuple."""

    def __init__(self, model: DepthGatedNet, gate: str, loops: int):
        super().__init__()
        self.model, self.gate, self.loops = model, gate, loops

    def forward(self, image: torch.Tensor, depth: torch.Tensor | None = None):
        outs = self.model(image, depth, loops=self.loops, gate=self.gate, full_size=False)
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
    gate = require_gate(model, gate or model.cfg.gate_source, have_depth=True)
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


def quantize_int8(model_path: str | Path, path: str | Path, info: ModelInfo, *,
                  frames: int = 16, size=(480, 640)) -> Path:
    """
    Write a statically quantised copy of an exported ONNX file (int8 weights and activations).

    QDQ format (what ONNX Runtime's CPU kernels and TensorRT both read); per-channel weights;
    activation ranges from `frames` synthetic street frames of the training seeds at `size`,
    with their exact depth for a graph that takes depth (hybrid: a third of it as a hole).
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, quantize_static,
                                          QuantType)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .inference import image_input
    from .training.datasets import SyntheticStreetDataset
    import onnx

    model_path, path = Path(model_path), Path(path)
    source = onnx.load(model_path)
    takes_depth = any(i.name == 'depth' for i in source.graph.input)
    data = SyntheticStreetDataset(frames, 0, size)
    mean, std = torch.tensor(info.mean), torch.tensor(info.std)

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= frames:
                return None
            s = data[self.i]
            self.i += 1
            feed = {'image': image_input(s['rgb'], mean, std).numpy()}
            if takes_depth:
                depth = s['depth'].copy()
                depth[:, : depth.shape[1] // 3] = np.nan
                feed['depth'] = depth[None, None].astype(np.float32)
            return feed

    tmp = path.with_name(f'.{path.name}.tmp')
    prepared = path.with_name(f'.{path.name}.pre.onnx')
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))     # the quantiser logs every scale it adjusts
    try:
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        # reduce_range: 7-bit weights, so the u8 x s8 products of CPUs without VNNI (AVX2
        # alone) cannot saturate their 16-bit sums, which costs such CPUs label agreement
        quantize_static(str(prepared), str(tmp), Frames(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, reduce_range=True)
        proto = onnx.load(tmp)
        meta = {p.key: p.value for p in source.metadata_props}
        del proto.metadata_props[:]
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)
        tmp.replace(path)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)
    return path


def label_agreement(model, info: ModelInfo, exported: str | Path, *, gate: str, loops: int,
                    size=(480, 640), frames: int = 4) -> float:
    """Share of pixels where an exported graph's labels equal eager's, on held-out renders."""
    from .inference import Predictor
    from .training.datasets import SYNTHETIC_VAL_FIRST_SEED, SyntheticStreetDataset

    eager = Predictor(model, info, device='cpu', loops=loops, gate=gate)
    graph = Predictor.from_checkpoint(exported, device='cpu', loops=loops, gate=gate)
    data = SyntheticStreetDataset(frames, SYNTHETIC_VAL_FIRST_SEED, size)
    same = total = 0
    for i in range(frames):
        s = data[i]
        depth = s['depth'] if gate in DEPTH_GATES else None
        a = eager.predict(s['rgb'], depth, outputs=()).labels
        b = graph.predict(s['rgb'], depth, outputs=()).labels
        same, total = same + int((a == b).sum()), total + a.size
    return same / total
