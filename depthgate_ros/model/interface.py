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
What a model is to the Predictor, and the one place a frame's gate source is decided.

Three kinds of model satisfy SegmentationModel: the depth-gated network (network.py), a
torchvision peer (peers.py) and an exported ONNX graph (onnx_backend.py). A frame's gate is
decided once, by `decide_gate`, and the decided gate is passed down; a model only checks that
it can run the gate it is given (`require_gate`).
"""
from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

import torch

from .config import DEPTH_GATES, ModelConfig

# Each loop's outputs (None where a model has none: a peer has no depth and no gate).
OUTPUT_KEYS = ('seg', 'log_depth', 'gate')


@runtime_checkable
class SegmentationModel(Protocol):
    """The interface the Predictor runs (DepthGatedNet, PeerNet, OnnxModel)."""

    cfg: ModelConfig
    hard_gate: bool                 # gate on the most likely depth bin only

    @property
    def fixed_gate(self) -> str | None:
        """Return the one gate source an export was made with; None: any of `gates`."""

    @property
    def gates(self) -> tuple[str, ...]:
        """Return the gate sources this model runs with."""

    @property
    def loops(self) -> int:
        """Return the recurrent loops run when the caller gives none."""

    def iter_loops(self, image: torch.Tensor, depth: torch.Tensor | None = None,
                   max_loops: int | None = None, gate: str | None = None,
                   full_size: bool = True) -> Iterator[dict]:
        """Yield each loop's outputs (OUTPUT_KEYS), computing a loop only when asked."""


def decide_gate(model: SegmentationModel, requested: str | None, have_depth: bool) -> str:
    """
    Decide a frame's gate source: the gate `requested` (None or `auto`: choose) given depth.

    `auto`: `hybrid` when the model was trained with a depth-driven gate (it falls back to
    predicted depth where sensor depth has holes), otherwise the model's own gate; an export's
    fixed gate always. A gate that reads depth falls back to `predicted` on a frame without
    depth, except on a sensor-only export, which has no predicted gate to fall back on.
    """
    trained, fixed = model.cfg.gate_source, model.fixed_gate
    depth_driven = trained in DEPTH_GATES + ('predicted',)
    gate = requested or 'auto'
    if gate == 'auto':
        gate = fixed or ('hybrid' if depth_driven else trained)
    if gate in DEPTH_GATES and not have_depth and depth_driven and fixed != 'sensor':
        return 'predicted'
    return gate


def require_gate(model: SegmentationModel, gate: str, have_depth: bool) -> str:
    """Return `gate` if `model` can run it on this input; raise ValueError saying why not."""
    allowed = model.gates
    if gate not in allowed:
        if allowed == ('none',):
            raise ValueError(f'gate {gate!r} needs a gated model; this one has no gate '
                             f'({model.cfg.architecture}, gate_source: none)')
        raise ValueError(f'gate {gate!r} is not available for this model; choose from {allowed}')
    if gate in DEPTH_GATES and not have_depth:
        raise ValueError(f'gate {gate!r} needs a depth map')
    return gate
