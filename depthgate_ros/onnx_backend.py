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
Run an exported ONNX file (depthgate-export) with ONNX Runtime behind the Predictor.

`OnnxModel` offers the part of DepthGatedNet's interface the Predictor uses (`cfg`,
`iter_loops`, `hard_gate`, `eval`, `to`), so pre- and post-processing stay the same code as
for the PyTorch model. The gate source, loop count and hard gate are those fixed at export.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .model.checkpoint import CheckpointError, ModelInfo
from .model.config import ModelConfig
from .model.interface import require_gate

METADATA_KEY = 'depthgate'      # where depthgate-export puts model info and config


class OnnxModel:
    def __init__(self, path: str | Path, device: str = 'cpu', threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as e:                     # optional dependency
            raise CheckpointError('running an .onnx model needs the onnxruntime package '
                                  '(pip install onnxruntime)') from e
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f'{path}: no such file')
        options = ort.SessionOptions()
        # ONNX Runtime's workers spin for a while after each run; the Predictor's
        # post-processing would then compete with them for the same cores.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        if threads:
            options.intra_op_num_threads = threads
        providers = ['CPUExecutionProvider']
        if str(device).startswith('cuda') and 'CUDAExecutionProvider' in \
                ort.get_available_providers():
            providers.insert(0, 'CUDAExecutionProvider')
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
            meta = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY])
            self.cfg = ModelConfig.from_dict(meta['config'])
            self.info = ModelInfo(**meta['info'])
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f'{path} is not a depthgate-export ONNX file: {e}') from e
        except Exception as e:                       # onnxruntime's own load errors
            raise CheckpointError(f'{path}: ONNX Runtime cannot load it: {e}') from e
        self.fixed_gate, self.loops = meta['gate'], int(meta['loops'])
        self._hard = bool(meta['hard_gate'])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.path = path

    @property
    def gates(self) -> tuple[str, ...]:
        return (self.fixed_gate,)

    @property
    def hard_gate(self) -> bool:
        return self._hard

    @hard_gate.setter
    def hard_gate(self, value: bool) -> None:
        if bool(value) != self._hard:
            raise ValueError(f'{self.path.name}: hard_gate={self._hard} is fixed at export; '
                             're-export with depthgate-export to change it')

    def eval(self) -> 'OnnxModel':  # noqa: A003  (nn.Module's name, which Predictor calls)
        return self

    def to(self, *args, **kwargs) -> 'OnnxModel':
        return self

    def run_flat(self, image: torch.Tensor, depth: torch.Tensor | None = None) -> list:
        feed = {'image': image.detach().cpu().float().numpy()}
        if 'depth' in self.inputs:
            if depth is None:
                raise ValueError(f'{self.path.name} was exported for sensor gating: it needs '
                                 'a depth map')
            feed['depth'] = depth.detach().cpu().float().numpy()
        return self.session.run(None, feed)

    def iter_loops(self, image: torch.Tensor, depth: torch.Tensor | None = None,
                   max_loops: int | None = None, gate: str | None = None,
                   full_size: bool = False):
        """Run the graph once and yield its loops (at the network's resolution, as exported)."""
        max_loops = self.loops if max_loops is None else max_loops
        if gate == 'predicted' and self.fixed_gate == 'hybrid' and depth is None:
            # hybrid = sensor depth where it is valid, the predicted gate elsewhere: with no
            # valid pixel, the graph runs the predicted gate
            depth = torch.full_like(image[:, :1], math.nan)
            gate = 'hybrid'
        if gate is not None and gate != self.fixed_gate:
            raise ValueError(f'{self.path.name} was exported with gate {self.fixed_gate!r}, '
                             f'not {gate!r}')
        require_gate(self, self.fixed_gate, depth is not None)
        if max_loops > self.loops:
            raise ValueError(f'{self.path.name} was exported with {self.loops} loops')
        out = dict(zip(self.outputs, self.run_flat(image, depth)))
        for loop in range(max_loops + 1):
            gate_w = out.get(f'gate_{loop}')
            yield {'seg': torch.from_numpy(out[f'seg_{loop}']),
                   'log_depth': torch.from_numpy(out[f'log_depth_{loop}']),
                   'gate': torch.from_numpy(gate_w) if gate_w is not None else None}
