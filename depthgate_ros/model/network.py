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
The depth-gated recurrent segmentation network (paper Figure 2).

    image -> backbone (stride 8) -> 3x3 block = features F
    loop 0:  F                    -> context -> classifier        (+ depth branch on F)
    loop l:  concat(F, prev)  -> 3x3 block -> context -> classifier (+ depth branch)

`context` is the paper baseline's second 3x3 conv, or the depth-aware gating module that
replaces it. Loops 1..L share one recurrent module, so the parameter count does not depend on
how many loops are run, and the number of loops is a call-time argument (anytime prediction).

The fast preset runs the same graph at stride 32, and its classifiers read a detail path: the
backbone's stride-8 and stride-16 maps, reduced once per image to one stride-8 map whose own
class scores are added to each loop's upsampled context scores, and its stride-4 map, reduced
to a few channels whose scores are added in turn at stride 4.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .backbone import Backbone
from .config import DEPTH_GATES, ModelConfig, PEERS
from .depth_bins import harden_gate, hybrid_gate, sensor_evidence, sensor_gate
from .gating import average_gate, conv_bn_relu, DepthGatingModule
from .heads import DepthHead
from .interface import require_gate


class LoopHead(nn.Module):
    """One prediction step: input block, context (plain or gated), classifier, depth branch."""

    def __init__(self, in_channels: int | None, cfg: ModelConfig, init_depth_m: float):
        super().__init__()
        c = cfg.channels
        # Loop 0 reads F directly; the recurrent module first maps concat(F, prev) back to c.
        self.block = conv_bn_relu(in_channels, c, 3) if in_channels else nn.Identity()
        if cfg.gate_source == 'none':
            self.context = conv_bn_relu(c, c, 3)
        else:
            self.gating = DepthGatingModule(c, cfg.dilations, cfg.tied, cfg.depthwise_branches)
        self.depth = DepthHead(c, cfg.num_bins, cfg.depth_channels, cfg.dropout,
                               init_depth_m=init_depth_m)
        self.attention = (DepthHead(c, cfg.num_bins, cfg.depth_channels, cfg.dropout,
                                    regress=False)
                          if cfg.gate_source == 'attention' else None)
        self.classifier = (DetailClassifier(c, cfg.detail_channels, cfg.num_classes, cfg.dropout,
                                            cfg.fine_channels)
                           if cfg.detail_channels else
                           nn.Sequential(nn.Dropout2d(cfg.dropout),
                                         nn.Conv2d(c, cfg.num_classes, 1)))

    def forward(self, x: torch.Tensor, gate_source: str, fixed_gate: torch.Tensor | None,
                hard: bool = False,
                evidence: tuple[torch.Tensor, torch.Tensor] | None = None,
                detail: tuple[torch.Tensor, ...] | None = None) -> dict[str, torch.Tensor]:
        x = self.block(x)
        depth_logits, log_depth = self.depth(x)
        if gate_source == 'none':
            gate = None
            feats = self.context(x)
        else:
            if gate_source == 'predicted' and hard:
                # the most likely depth bin alone: one branch per pixel (sparse gating)
                gate = F.one_hot(depth_logits.argmax(1), depth_logits.shape[1]).permute(
                    0, 3, 1, 2).to(depth_logits.dtype)
            elif gate_source == 'predicted':
                gate = depth_logits.softmax(1)
            elif gate_source == 'hybrid':
                gate = hybrid_gate(*evidence, depth_logits.softmax(1))
                if hard:
                    gate = harden_gate(gate)
            elif gate_source == 'attention':
                gate = self.attention(x)[0].softmax(1)
            else:  # "sensor" and "average" do not depend on the loop's own prediction
                gate = fixed_gate
            feats = self.gating(x, gate)
        seg = self.classifier(feats) if detail is None else self.classifier(feats, *detail)
        return {'features': feats, 'seg': seg, 'depth_logits': depth_logits,
                'log_depth': log_depth, 'gate': gate}


class DetailPath(nn.Module):
    """
    The maps the classifiers read.

    A stride-8 map (stride-8 features plus stride-16 ones upsampled) and, with `fine_out`, a
    stride-4 map of the stride-4 features alone.
    """

    def __init__(self, fine_in: int, low_channels: int, mid_channels: int, channels: int,
                 kernel: int, fine_out: int = 0):
        """`fine_in`: the backbone's stride-4 width; `fine_out` (ModelConfig.fine_channels)."""
        super().__init__()
        self.low = conv_bn_relu(low_channels, channels, kernel)
        self.mid = conv_bn_relu(mid_channels, channels, 1)
        self.fine = conv_bn_relu(fine_in, fine_out, 3) if fine_out else None

    def forward(self, fine: torch.Tensor, low: torch.Tensor,
                mid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        detail = self.low(low) + F.interpolate(self.mid(mid), size=low.shape[-2:],
                                               mode='bilinear', align_corners=False)
        return (detail,) if self.fine is None else (detail, self.fine(fine))


class DetailClassifier(nn.Module):
    """
    Classify as LR-ASPP does: the context's scores upsampled plus the detail map's own.

    At stride 8, or at stride 4 with a `fine` map, whose scores are added to the stride-8 ones
    upsampled. Linear in every input, so only num_classes planes are upsampled, and a thin thing
    the context cannot see still gets its own score from the detail map at its stride-8 cell
    (and from the fine map at its stride-4 cell).
    """

    def __init__(self, channels: int, detail_channels: int, num_classes: int, dropout: float,
                 fine_channels: int = 0):
        super().__init__()
        self.context = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))
        self.detail = nn.Conv2d(detail_channels, num_classes, 1)
        self.fine = nn.Conv2d(fine_channels, num_classes, 1) if fine_channels else None

    def forward(self, feats: torch.Tensor, detail: torch.Tensor,
                fine: torch.Tensor | None = None) -> torch.Tensor:
        scores = F.interpolate(self.context(feats), size=detail.shape[-2:], mode='bilinear',
                               align_corners=False) + self.detail(detail)
        if fine is None:
            return scores
        return F.interpolate(scores, size=fine.shape[-2:], mode='bilinear',
                             align_corners=False) + self.fine(fine)


class DepthGatedNet(nn.Module):
    def __init__(self, cfg: ModelConfig, backbone_weights: str | None = None):
        super().__init__()
        self.cfg = cfg
        # Regression starts at the geometric centre of the bins: a sensible prior depth.
        init_depth = math.exp(sum(math.log(e) for e in cfg.depth_edges) / len(cfg.depth_edges)) \
            if cfg.depth_edges else 10.0
        self.backbone = Backbone(cfg.backbone, cfg.frozen_bn, backbone_weights, cfg.output_stride,
                                 cfg.backbone_width, cfg.backbone_reduced_tail, cfg.fine_stride)
        self.stem = conv_bn_relu(self.backbone.out_channels, cfg.channels, cfg.stem_kernel)
        self.stem_scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(self.backbone.out_channels, cfg.channels, 1,
                                               bias=False),
            nn.Sigmoid()) if cfg.stem_scale else None
        bb = self.backbone
        self.detail = (DetailPath(bb.fine_channels, bb.low_channels, bb.mid_channels,
                                  cfg.detail_channels, cfg.detail_kernel, cfg.fine_channels)
                       if cfg.detail_channels else None)
        # The baseline's first 3x3 layer; its output F is shared by every loop.
        self.head = LoopHead(None, cfg, init_depth)
        prev = cfg.channels if cfg.recurrent_input == 'features' else cfg.num_classes
        self.refine = LoopHead(cfg.channels + prev, cfg, init_depth) if cfg.recurrent else None
        self.register_buffer('depth_edges', torch.tensor(cfg.depth_edges, dtype=torch.float32))
        # Inference option, not a trained property: gate on the most likely depth bin
        # (predicted, or the majority sensor bin of a feature cell) instead of the soft
        # distribution, so the gating module can run sparse.
        self.hard_gate = False

    fixed_gate = None                    # any of `gates`, chosen per call

    @torch.no_grad()
    def offset_class_scores(self, offsets: torch.Tensor) -> None:
        """
        Add `offsets[c]` to class c's score in every loop (calibration.py fits them).

        Into a bias the scores pass through unscaled: the detail map's, whose scores are added
        to the context's and enlarged with them, or the plain classifier's. Costs nothing at
        run time and travels with the weights (checkpoints, exports).
        """
        offsets = torch.as_tensor(offsets, dtype=torch.float32).flatten()
        if offsets.numel() != self.cfg.num_classes:
            raise ValueError(f'{offsets.numel()} offsets for {self.cfg.num_classes} classes')
        for loop_head in (self.head, self.refine):
            if loop_head is None:
                continue
            c = loop_head.classifier
            bias = c.detail.bias if isinstance(c, DetailClassifier) else c[-1].bias
            bias += offsets.to(bias)

    def compile_parts(self) -> None:
        """
        torch.compile, in place, each module that iter_loops calls, rather than iter_loops.

        The loop structure stays in Python: the anytime loop break, the per-frame gate choice and
        the sensor evidence need no graph of their own, and a gate not seen before recompiles
        only the loop heads, not the encoder (most of the compile time). Shapes as torch.compile
        treats them: a camera's one size gets static kernels; a second size (another batch of
        several cameras) compiles once more, with what changed left dynamic.
        """
        for part in (self.backbone, self.stem, self.stem_scale, self.detail, self.head,
                     self.refine):
            if part is not None:
                part.compile()

    @property
    def gates(self) -> tuple[str, ...]:
        """Return the gate sources this model can run with (a baseline has no gate to choose)."""
        if self.cfg.gate_source == 'none':
            return ('none',)
        return ('average',) + DEPTH_GATES + ('predicted',) + (
            ('attention',) if self.cfg.gate_source == 'attention' else ())

    @property
    def loops(self) -> int:
        return self.cfg.loops

    def forward(self, image: torch.Tensor, depth: torch.Tensor | None = None,
                loops: int | None = None, gate: str | None = None,
                full_size: bool = True) -> list[dict]:
        """
        Return one dict per loop 0..L.

        `seg` (N, C, H, W) and `depth_logits` (N, K, H, W) logits and `log_depth` (N, 1, H, W) at
        the input size; `gate` (N, K, h, w) and `features` at the output stride. `depth` is sensor
        depth in metres (NaN/0 invalid). `full_size=False` leaves `seg` and `log_depth` at the
        network's own resolution (stride 4 or 8 with detail paths, else the output stride) and
        skips `depth_logits`, for a caller that upsamples once what it needs (inference).
        """
        loops = self.cfg.loops if loops is None else loops
        steps = self.iter_loops(image, depth, loops, gate, full_size)
        return [next(steps) for _ in range(loops + 1)]

    def features(self, image: torch.Tensor) -> tuple[tuple[torch.Tensor, ...] | None,
                                                     torch.Tensor]:
        """Return (the detail path's maps or None, features F shared by every loop)."""
        fine, low, mid, high = self.backbone(image)
        feat = self.stem(high)
        if self.stem_scale is not None:
            feat = feat * self.stem_scale(high)
        return (self.detail(fine, low, mid) if self.detail is not None else None), feat

    def iter_loops(self, image: torch.Tensor, depth: torch.Tensor | None = None,
                   max_loops: int | None = None, gate: str | None = None,
                   full_size: bool = True):
        """
        Anytime prediction.

        Yields loop 0's output dict (as `forward`), then each refinement's, computing a loop only
        when the caller asks for it (up to `max_loops`).
        """
        max_loops = self.cfg.loops if max_loops is None else max_loops
        if max_loops < 0 or (max_loops > 0 and self.refine is None):
            raise ValueError(f'loops={max_loops} needs a recurrent model (recurrent: true)')
        g = require_gate(self, gate or self.cfg.gate_source, depth is not None)
        hard = self.hard_gate and not self.training
        size = image.shape[-2:]
        detail, feat = self.features(image)
        fixed_gate = evidence = None
        if g == 'sensor':
            fixed_gate = sensor_gate(depth, self.depth_edges, feat.shape[-2:],
                                     self.cfg.sensor_sigma).to(feat.dtype)
            if hard:
                fixed_gate = harden_gate(fixed_gate)
        elif g == 'hybrid':
            evidence = tuple(t.to(feat.dtype) for t in sensor_evidence(
                depth, self.depth_edges, feat.shape[-2:], self.cfg.sensor_sigma))
        elif g == 'average':
            fixed_gate = average_gate(feat, self.cfg.num_bins)

        prev = None
        for loop in range(max_loops + 1):
            if prev is None:
                out = self.head(feat, g, fixed_gate, hard, evidence, detail)
            else:
                prev_in = prev['features'] if self.cfg.recurrent_input == 'features' \
                    else prev['seg'].softmax(1)
                out = self.refine(torch.cat([feat, prev_in], 1), g, fixed_gate, hard, evidence,
                                  detail)
            prev = out
            if not full_size:
                yield {**out, 'depth_logits': None}
                continue
            yield {**out, **{key: F.interpolate(out[key], size=size, mode='bilinear',
                                                align_corners=False)
                             for key in ('seg', 'depth_logits', 'log_depth')}}


def build_model(cfg: ModelConfig, backbone_weights: str | None = None) -> nn.Module:
    """Return the network `cfg` describes: a DepthGatedNet, or a torchvision peer."""
    if cfg.architecture in PEERS:
        if backbone_weights is not None:
            raise ValueError(f'{cfg.architecture} takes no backbone_weights here')
        from .peers import PeerNet
        return PeerNet(cfg)
    return DepthGatedNet(cfg, backbone_weights)
