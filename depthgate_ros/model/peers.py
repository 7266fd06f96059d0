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
torchvision's real-time segmentation networks behind DepthGatedNet's interface.

They are the fast preset's peers: trained by the same engine on the same data, saved as the
same checkpoints, evaluated and timed by the same tools. A peer predicts labels only (no depth,
no gate, no loops), so it runs as a baseline: gate `none`, loop 0.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import segmentation

from .config import ModelConfig, PEERS
from .interface import require_gate


class PeerNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.architecture not in PEERS:
            raise ValueError(f'{cfg.architecture!r} is not a peer; choose one of {PEERS}')
        self.cfg = cfg
        # weights=None: nothing is ever downloaded; no auxiliary head (its loss is not ours).
        self.net = getattr(segmentation, cfg.architecture)(
            weights=None, weights_backbone=None, num_classes=cfg.num_classes, aux_loss=False)
        self.register_buffer('depth_edges', torch.tensor(cfg.depth_edges, dtype=torch.float32))
        self.hard_gate = False

    fixed_gate = None
    gates = ('none',)
    loops = 0

    def compile_parts(self) -> None:
        """torch.compile, in place, what iter_loops calls: as DepthGatedNet.compile_parts."""
        for part in (self.net.backbone, self.net.classifier):
            part.compile()

    def _low_res_scores(self, image: torch.Tensor) -> torch.Tensor:
        features = self.net.backbone(image)
        # LR-ASPP's head reads the backbone's dict (its stride-8 and last maps), DeepLabv3's
        # the last map alone.
        return self.net.classifier(features if isinstance(self.net, segmentation.LRASPP)
                                   else features['out'])

    def forward(self, image: torch.Tensor, depth: torch.Tensor | None = None,
                loops: int | None = None, gate: str | None = None,
                full_size: bool = True) -> list[dict]:
        return list(self.iter_loops(image, depth, loops, gate, full_size))

    def iter_loops(self, image: torch.Tensor, depth: torch.Tensor | None = None,
                   max_loops: int | None = None, gate: str | None = None,
                   full_size: bool = True):
        """
        Yield the one prediction.

        torchvision's forward upsamples the scores to the input size itself; `full_size=False`
        stops before that step (as DepthGatedNet's does), so the Predictor upsamples once.
        """
        if max_loops:
            raise ValueError(f'loops={max_loops}: {self.cfg.architecture} has no recurrent '
                             'module')
        require_gate(self, gate or 'none', depth is not None)
        seg = self.net(image)['out'] if full_size else self._low_res_scores(image)
        yield {'seg': seg, 'log_depth': None, 'depth_logits': None, 'gate': None,
               'features': None}
