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
Architecture configuration: everything needed to rebuild the network.

The config travels inside every checkpoint (as a plain dict), so it holds only primitives.
Every key is documented here, where it is defined (training configs override them under `model:`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

BACKBONES = ('resnet18', 'resnet34', 'resnet50', 'resnet101')
GATE_SOURCES = ('none', 'average', 'sensor', 'hybrid', 'predicted', 'attention')
# The gates that read sensor depth; without a depth map a frame falls back to `predicted`.
DEPTH_GATES = ('sensor', 'hybrid')
# The gates any depth-gated model can be run (or trained, per batch) with.
CALL_GATES = DEPTH_GATES + ('predicted', 'average')
RECURRENT_INPUTS = ('features', 'prediction')


@dataclass(frozen=True)
class ModelConfig:
    # torchvision ResNet turned to output stride 8 (paper section 5).
    backbone: str = 'resnet18'
    # Replace the backbone's BatchNorm by FrozenBatchNorm2d (paper: batch size 1, global moments).
    frozen_bn: bool = True
    # Semantic classes; 19 = Cityscapes train ids.
    num_classes: int = 19
    # Width of the head, the gating branches and the recurrent module (authors: 512).
    channels: int = 512
    # One 3x3 atrous branch per dilation; K = len(dilations) is also the number of depth bins.
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    # Share one 3x3 kernel across all branches ("tied") instead of one kernel per branch.
    tied: bool = False
    # Gate used when the caller does not name one: "none" is the paper's baseline (a plain 3x3
    # conv, no branches); docs/architecture.md lists the others.
    gate_source: str = 'predicted'
    # Depth-bin edges in metres, ascending, K-1 values. Nearest bin -> largest dilation.
    # Training replaces these by equal-count quantiles of the training set's valid depths.
    depth_edges: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0)
    # Sensor depth bins as a distribution: the probability of each bin for a measurement with
    # this standard deviation in log depth (0: one-hot per pixel, as the paper).
    sensor_sigma: float = 0.0
    # Build the recurrent refinement module (weights shared by every loop >= 1).
    recurrent: bool = True
    # What the recurrent module concatenates to the stride-8 features: the previous loop's
    # 512-channel penultimate features (authors' code) or its softmax prediction (paper text).
    recurrent_input: str = 'features'
    # Loops run when the caller does not say (0 = feed-forward only).
    loops: int = 2
    # Dropout before each classifier (authors: 0.1).
    dropout: float = 0.1
    # Channels of the depth branch: 1x1 to depth_channels[0], 3x3 to depth_channels[1].
    depth_channels: tuple[int, int] = (128, 32)

    def __post_init__(self) -> None:
        # Coerce lists (from YAML / checkpoints) into tuples so configs compare and hash.
        for name in ('dilations', 'depth_edges', 'depth_channels'):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.backbone not in BACKBONES:
            raise ValueError(f'backbone {self.backbone!r} is not one of {BACKBONES}')
        if self.gate_source not in GATE_SOURCES:
            raise ValueError(f'gate_source {self.gate_source!r} is not one of {GATE_SOURCES}')
        if self.recurrent_input not in RECURRENT_INPUTS:
            raise ValueError(
                f'recurrent_input {self.recurrent_input!r} is not one of {RECURRENT_INPUTS}')
        if self.num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {self.num_classes}')
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f'dilations must be positive integers, got {self.dilations}')
        if len(self.depth_edges) != self.num_bins - 1:
            raise ValueError(
                f'depth_edges needs K-1 = {self.num_bins - 1} values for '
                f'{self.num_bins} dilations, got {len(self.depth_edges)}')
        if any(b <= a for a, b in zip(self.depth_edges, self.depth_edges[1:])) or (
                self.depth_edges and self.depth_edges[0] <= 0):
            raise ValueError(f'depth_edges must be positive and ascending, got {self.depth_edges}')
        if self.loops < 0 or (self.loops > 0 and not self.recurrent):
            raise ValueError(f'loops={self.loops} needs recurrent=True and loops >= 0')
        if self.sensor_sigma < 0:
            raise ValueError(f'sensor_sigma must be >= 0, got {self.sensor_sigma}')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'dropout must be in [0, 1), got {self.dropout}')

    @property
    def num_bins(self) -> int:
        return len(self.dilations)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> 'ModelConfig':
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'unknown model config keys: {unknown}; known keys: {sorted(known)}')
        return cls(**d)

    def replace(self, **changes) -> 'ModelConfig':
        return dataclasses.replace(self, **changes)


__all__ = ['ModelConfig', 'BACKBONES', 'CALL_GATES', 'DEPTH_GATES', 'GATE_SOURCES',
           'RECURRENT_INPUTS']
