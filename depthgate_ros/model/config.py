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

BACKBONES = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'mobilenet_v3_large', 'espnetv2')
GATE_SOURCES = ('none', 'average', 'sensor', 'hybrid', 'predicted', 'attention')
# The gates that read sensor depth; without a depth map a frame falls back to `predicted`.
DEPTH_GATES = ('sensor', 'hybrid')
# The gates any depth-gated model can be run (or trained, per batch) with.
CALL_GATES = DEPTH_GATES + ('predicted', 'average')
RECURRENT_INPUTS = ('features', 'prediction')
# torchvision networks trained and evaluated beside ours as they are (model/peers.py).
PEERS = ('lraspp_mobilenet_v3_large', 'deeplabv3_mobilenet_v3_large')
ARCHITECTURES = ('depthgate',) + PEERS
ESPNETV2_WIDTHS = (0.5, 1.0, 1.25, 1.5, 2.0)


@dataclass(frozen=True)
class ModelConfig:
    # "depthgate" (this package's network) or one of PEERS, which reads only num_classes
    # (and runs as a baseline: gate_source none, no recurrent module).
    architecture: str = 'depthgate'
    # A torchvision ResNet (paper section 5: output stride 8), MobileNetV3-Large, or ESPNetv2
    # (whose published Cityscapes and ImageNet weights load, model/espnetv2.py).
    backbone: str = 'resnet18'
    # Stride of the map the head works on: 8 (paper), 16 or 32 (MobileNetV3: 16 or 32;
    # ESPNetv2: 16).
    output_stride: int = 8
    # MobileNetV3: torchvision's width multiplier for every backbone layer, and its
    # "reduced tail" (the last stage at half width, as the MobileNetV3 paper segments). Either
    # changes the layer shapes, so torchvision's ImageNet weights (width 1, full tail) no longer
    # load. ESPNetv2: its width s (0.5, 1.0, 1.25, 1.5, 2.0), which its weight files name.
    backbone_width: float = 1.0
    backbone_reduced_tail: bool = False
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
    # Each branch a depthwise 3x3 (one kernel per channel; the 1x1 fuse after the gated sum
    # mixes channels) instead of the paper's full 3x3: 1/channels of its multiply-adds. On the
    # fast preset it saved little time for a clear loss of mIoU (docs/results.md).
    depthwise_branches: bool = False
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
    # Detail path (0: none, as the paper): the backbone's stride-8 and stride-16 maps reduced to
    # one stride-8 map of this many channels, whose class scores each loop's classifier adds to
    # its upsampled context scores, so a head at stride 16 or 32 still draws boundaries at 8.
    detail_channels: int = 0
    # Stride-4 detail (0: none; needs detail_channels): the backbone's stride-4 map reduced by a
    # 3x3 conv to this many channels, whose class scores each loop's classifier adds to its
    # stride-8 scores upsampled, so a thing a stride-8 cell cannot hold (a pole is 4-8 pixels
    # wide at 10-20 m, a sign's edge) gets a score of its own. The fast preset has 8 (results.md).
    fine_channels: int = 0
    # Stride of that map: 4, or 2 (ESPNetv2: its first conv's map), where a pole 3-6 pixels
    # wide in a 360 x 480 frame is more than one cell across. Tried on street for poles and
    # not kept: no better fit, a slower forward pass (docs/results.md).
    fine_stride: int = 4
    # Kernel of the block that maps the backbone's last map to `channels` (the paper's first 3x3
    # head layer; 1 as LR-ASPP's, where the context is at stride 32 and costs 9x less).
    stem_kernel: int = 3
    # Scale the stem's output per channel by a sigmoid of the backbone's last map averaged over
    # the image (LR-ASPP's image-level context). On the fast preset its gain stayed within the
    # spread of seeds (docs/results.md): not kept.
    stem_scale: bool = False
    # Kernel of the detail path's stride-8 conv (1 as LR-ASPP's stride-8 classifier: on the
    # fast preset a little faster, and worse on thin classes such as traffic signs).
    detail_kernel: int = 3

    def __post_init__(self) -> None:
        # Coerce lists (from YAML / checkpoints) into tuples so configs compare and hash.
        for name in ('dilations', 'depth_edges', 'depth_channels'):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f'architecture {self.architecture!r} is not one of {ARCHITECTURES}')
        if self.architecture in PEERS and (self.gate_source != 'none' or self.recurrent):
            raise ValueError(f'{self.architecture} has no gate and no recurrent module: it '
                             'needs gate_source: none, recurrent: false, loops: 0')
        if self.backbone not in BACKBONES:
            raise ValueError(f'backbone {self.backbone!r} is not one of {BACKBONES}')
        strides = {'mobilenet_v3_large': (16, 32), 'espnetv2': (16,)}.get(self.backbone,
                                                                          (8, 16, 32))
        if self.output_stride not in strides:
            raise ValueError(f'output_stride {self.output_stride} is not one of {strides} '
                             f'for {self.backbone}')
        if self.backbone.startswith('resnet') and (
                self.backbone_width != 1.0 or self.backbone_reduced_tail):
            raise ValueError(f'backbone_width and backbone_reduced_tail are MobileNetV3 '
                             f'options; {self.backbone} has neither')
        if self.backbone == 'espnetv2' and (self.backbone_width not in ESPNETV2_WIDTHS
                                            or self.backbone_reduced_tail):
            raise ValueError(f'espnetv2 takes backbone_width {ESPNETV2_WIDTHS} and no reduced '
                             f'tail, got {self.backbone_width}, {self.backbone_reduced_tail}')
        if self.backbone_width <= 0:
            raise ValueError(f'backbone_width must be > 0, got {self.backbone_width}')
        if self.detail_channels < 0:
            raise ValueError(f'detail_channels must be >= 0, got {self.detail_channels}')
        if self.fine_channels < 0 or (self.fine_channels and not self.detail_channels):
            raise ValueError(f'fine_channels must be >= 0 and needs detail_channels, got '
                             f'{self.fine_channels} with detail_channels {self.detail_channels}')
        if self.fine_stride not in (2, 4) or (self.fine_stride == 2 and (
                self.backbone != 'espnetv2' or not self.fine_channels)):
            raise ValueError(f'fine_stride must be 4, or 2 with backbone espnetv2 and '
                             f'fine_channels, got {self.fine_stride}')
        if self.detail_channels and self.recurrent_input == 'prediction':
            raise ValueError('detail_channels needs recurrent_input: features (the prediction '
                             'is at stride 8, the recurrent module at the output stride)')
        for key in ('stem_kernel', 'detail_kernel'):
            if getattr(self, key) not in (1, 3):
                raise ValueError(f'{key} must be 1 or 3, got {getattr(self, key)}')
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
        """Build from plain keys; `preset: NAME` starts from PRESETS[NAME], the keys on top."""
        d = dict(d)
        name = d.pop('preset', None)
        if name is not None:
            if name not in PRESETS:
                raise ValueError(f'unknown model preset {name!r}; choose one of {sorted(PRESETS)}')
            d = {**PRESETS[name], **d}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'unknown model config keys: {unknown}; known keys: {sorted(known)}')
        return cls(**d)

    def replace(self, **changes) -> 'ModelConfig':
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **changes) -> 'ModelConfig':
        """Return a named architecture (PRESETS), with `changes` on top."""
        return cls.from_dict({'preset': name, **changes})


# Named architectures; a training config picks one with `model: {preset: NAME}`.
PRESETS = {
    # Real time on a CPU: MobileNetV3-Large at stride 32 with its reduced tail (faster, mIoU
    # within the spread of seeds), gating and the recurrent loops on its 1/32 map (64
    # channels: twice as many bought too little for their time), a 64-channel detail path at
    # stride 8 that each loop's classifier adds its own scores to, as LR-ASPP does, and an
    # 8-channel one at stride 4 added the same way (better on thin classes for a few percent
    # more time). Small dilations: the head ablation found large ones cost accuracy, and at
    # stride 32 a cell already spans 4x the paper's. docs/results.md has the evidence.
    'fast': {'backbone': 'mobilenet_v3_large', 'output_stride': 32, 'frozen_bn': False,
             'backbone_reduced_tail': True,
             'channels': 64, 'depth_channels': [64, 32], 'detail_channels': 64,
             'fine_channels': 8,
             'dilations': [1, 1, 1, 2, 3], 'dropout': 0.0, 'stem_kernel': 1},
    # Real streets: the ESPNetv2 encoder (width 2.0, stride 16), which starts from published
    # Cityscapes weights (backbone_weights), with the fast preset's head on its stride-16 map
    # and detail paths from its stride-8 and stride-4 maps. Its BatchNorm stays trainable
    # (frozen_bn false) so the training config decides what is frozen (optim.freeze_bn).
    # Width 2.0 rather than 1.0: better features on thin classes for 1.7x the forward time
    # (docs/results.md, "A wider encoder").
    'street': {'backbone': 'espnetv2', 'output_stride': 16, 'frozen_bn': False,
               'backbone_width': 2.0,
               'channels': 64, 'depth_channels': [64, 32], 'detail_channels': 64,
               'fine_channels': 8, 'dilations': [1, 2, 3, 4, 6], 'dropout': 0.1,
               'stem_kernel': 1},
}


__all__ = ['ModelConfig', 'ARCHITECTURES', 'BACKBONES', 'CALL_GATES', 'DEPTH_GATES',
           'GATE_SOURCES', 'PEERS', 'PRESETS', 'RECURRENT_INPUTS']
