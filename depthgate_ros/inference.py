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
Predictor: numpy in, numpy out.

The only pre- and post-processing in the package.

The node, the bag and dataset evaluators and the demo all call `Predictor.predict`, so resize,
normalisation, test-time augmentation and argmax exist once.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
import logging
import math
from pathlib import Path
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .label_upsampling import integer_factor, upsampled_labels, upsampled_planes
from .model.checkpoint import load_checkpoint, ModelInfo
from .model.config import DEPTH_GATES, GATE_SOURCES
from .model.folding import fold_batchnorm
from .model.interface import decide_gate, SegmentationModel

log = logging.getLogger(__name__)

# `auto`: the Predictor picks per frame (decide_gate); the rest are the model's gate sources.
GATES = ('auto',) + GATE_SOURCES


def resolve_device(spec: str = 'auto') -> torch.device:
    """`auto` -> first CUDA device, else CPU with a warning; `cuda[:N]` must exist."""
    if spec == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda')
        log.warning("device 'auto': no CUDA device available, running on CPU")
        return torch.device('cpu')
    dev = torch.device(spec)  # raises on a malformed name
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {spec!r} requested but CUDA is not available')
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f'device {spec!r} requested but only '
                             f'{torch.cuda.device_count()} CUDA device(s) exist')
    elif dev.type != 'cpu':
        raise ValueError(f'device {spec!r} is not one of auto, cpu, cuda[:N]')
    return dev


def normalize_image(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """
    uint8 (N, 3, H, W) -> float network input.

    Training calls this too, so the model sees identically prepared images in training and
    deployment.
    """
    # (x / 255 - mean) / std as a scale and a shift in place: three passes over the image, no
    # temporaries
    scale, shift = 1.0 / (255.0 * std), -mean / std
    out = image.to(torch.float32, copy=True)            # keeps the memory format
    pixels = out.permute(0, 2, 3, 1)
    if pixels.is_contiguous():
        # Channels last (a camera image as it arrives): a per-channel broadcast over the 3-wide
        # inner dimension does not vectorise, the same factors repeated along whole rows do.
        rows = pixels.view(-1, pixels.shape[2] * 3)
        rows.mul_(scale.repeat(pixels.shape[2])).add_(shift.repeat(pixels.shape[2]))
        return out
    return out.mul_(scale.view(1, 3, 1, 1)).add_(shift.view(1, 3, 1, 1))


def image_input(rgb: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
                device: torch.device | str = 'cpu') -> torch.Tensor:
    """Return the normalised (1, 3, H, W) network input on `device` for (H, W, 3) uint8 `rgb`."""
    # Writable and contiguous: ROS messages arrive as read-only views (copied only then).
    image = torch.from_numpy(np.require(rgb, requirements=['C', 'W'])).to(device)
    return normalize_image(image.permute(2, 0, 1).unsqueeze(0), mean, std)


# Per-pixel outputs computed only when asked for (`outputs` of Predictor.predict): each costs
# full-resolution work that labels and depth do not need.
OPTIONAL_OUTPUTS = ('confidence', 'gate')
# ... and those computed only when named, never by default: every class's score at full
# resolution is for tools that study the scores (calibration.py), not for a camera's frames.
ON_REQUEST_OUTPUTS = ('scores',)


@dataclass
class Prediction:
    labels: np.ndarray            # (H, W) class ids, uint8 (uint16 past 255 classes)
    depth: np.ndarray | None      # (H, W) float32 metres, the network's monocular estimate;
    #                               None: the model predicts no depth (a torchvision peer)
    confidence: np.ndarray | None  # (H, W) float32, softmax probability of the chosen class;
    #                                None: not asked for
    gate: np.ndarray | None       # (H, W) uint8 index of the dominant branch; None: baseline,
    #                               or not asked for
    gate_source: str              # the gate actually used for this frame
    loops: int
    scores: np.ndarray | None = None  # (C, H, W) float32 class logits (probabilities averaged
    #                                   over test-time views); only when asked for by name


class Predictor:
    def __init__(self, model: SegmentationModel, info: ModelInfo, *, device: str = 'auto',
                 fp16: bool = False, channels_last: bool = False, loops: int | None = None,
                 gate: str = 'auto', size: Sequence[int] | None = None,
                 tta_scales: Sequence[float] = (1.0,), tta_flip: bool = False,
                 depth_blur_sigma: float = 0.0, hard_gate: bool = False,
                 compile: bool = False):    # noqa: A002  (torch.compile's own word)
        """
        `size` (H, W) is the inference resolution (None: the input's own).

        `tta_scales` are relative to it. `depth_blur_sigma` (output pixels) smooths the predicted
        depth (paper Table 1, "+blur"). `hard_gate`: gate on the most likely predicted depth bin
        only, so the gating module evaluates one branch per pixel (sparse gating). `compile`:
        torch.compile the model's parts in place (a torch model's `compile_parts`); each new
        input shape and gate compiles on its first frame, and a compilation that fails leaves
        the model eager, with a warning.
        """
        if gate not in GATES:
            raise ValueError(f'gate {gate!r} is not one of {GATES}')
        if size is not None and (len(size) != 2 or min(size) < 8):
            raise ValueError(f'size must be (height, width) of at least 8 pixels, got {size}')
        if not tta_scales or min(tta_scales) <= 0:
            raise ValueError(f'tta_scales must be positive, got {tta_scales}')
        if depth_blur_sigma < 0:
            raise ValueError(f'depth_blur_sigma must be >= 0, got {depth_blur_sigma}')
        self.device = resolve_device(device)
        self.fp16 = fp16 and self.device.type == 'cuda'
        if fp16 and not self.fp16:
            log.warning('fp16 autocast is only used on CUDA; running float32 on %s', self.device)
        if self.device.type == 'cuda':
            # a camera's frames share one size: let cuDNN pick its fastest kernels once
            torch.backends.cudnn.benchmark = True
        # an ONNX Runtime graph takes plain arrays: channels last is for torch modules only
        self.memory_format = torch.channels_last \
            if channels_last and isinstance(model, torch.nn.Module) else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        self.model.hard_gate = hard_gate
        # what the network has been compiled for: (input shape, gate, hard gate)
        self.compiled: set[tuple] | None = None
        # TORCH_COMPILE_DISABLE=1 turns torch.compile into a no-op: then say nothing of it
        if compile and hasattr(self.model, 'compile_parts') and not torch._dynamo.config.disable:
            self.model.compile_parts()
            self.compiled = set()
        self._compile_failed = False
        self._eager_now = False             # warm_up without compiling
        # running estimate of one recurrent loop's cost, for latency budgets
        self.loop_seconds: float | None = None
        self.info = info
        self.cfg = model.cfg
        self.loops = model.loops if loops is None else loops
        if self.loops > 0 and not self.cfg.recurrent:
            raise ValueError(f'loops={self.loops} but the model has no recurrent module')
        self.gate = gate
        self.size = tuple(size) if size is not None else None
        self.tta_scales = tuple(tta_scales)
        self.tta_flip = tta_flip
        self.depth_blur_sigma = depth_blur_sigma
        self._mean = torch.tensor(info.mean, device=self.device)
        self._std = torch.tensor(info.std, device=self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **options) -> 'Predictor':
        """Load a .pt checkpoint, or an .onnx file from depthgate-export (run by ONNX Runtime)."""
        if str(path).endswith('.onnx'):
            from .onnx_backend import OnnxModel
            model = OnnxModel(path, device=options.get('device', 'cpu'))
            options.setdefault('hard_gate', model.hard_gate)
            return cls(model, model.info, **options)
        model, info, _ = load_checkpoint(path)
        # The model is the Predictor's alone: BatchNorm can be folded into the convolutions
        # (a pass less over every activation map).
        return cls(fold_batchnorm(model.eval()), info, **options)

    def warm_up(self, batch: int = 1, compile: bool = True) -> None:  # noqa: A002
        """
        Run blank frames: allocations and lazy initialisation, and compilations frames need.

        A frame with depth (which an export gated on sensor depth needs). A compiled network
        with `compile` also runs one without depth and, for `batch` > 1, a batch of that many
        each way, so that both gates `auto` picks are compiled at the inference size before
        the first frame; without `compile` (frames of another size will come), one frame,
        eager.
        """
        rgb, depth = np.zeros((64, 64, 3), np.uint8), np.full((64, 64), 10.0, np.float32)
        if self.compiled is None or not compile:
            self._eager_now = True
            try:
                self.predict(rgb, depth)
            finally:
                self._eager_now = False
            return
        self.predict(rgb, depth)
        self.predict(rgb)
        if batch > 1:
            self.predict_batch([rgb] * batch, [depth] * batch)
            self.predict_batch([rgb] * batch)

    def wants_depth(self, gate: str | None = None) -> bool:
        """Tell whether a frame run with `gate` would read sensor depth (worth waiting for)."""
        return decide_gate(self.model, gate or self.gate, have_depth=True) in DEPTH_GATES

    @property
    def gates(self) -> tuple[str, ...]:
        """Return the gate sources this model runs with, `auto` first (an export has one)."""
        return ('auto',) + self.model.gates

    @property
    def hard_gate(self) -> bool:
        return self.model.hard_gate

    @hard_gate.setter
    def hard_gate(self, value: bool) -> None:
        self.model.hard_gate = bool(value)

    def camera_scale(self, focal_px: float | None, width: int) -> float:
        """
        How much larger this camera shows things than the training camera did, at equal depth.

        `focal_px` is the camera's focal length at the image's `width`. A camera with a longer
        focal length (or a larger inference size) makes everything look closer, exactly as
        scaling the image up does: sensor depth is divided by this factor before it is binned,
        and predicted depth multiplied by it, so both stay metric. 1.0 when either focal
        length is unknown.
        """
        trained = self.info.focal_px
        if not focal_px or not trained:
            return 1.0
        inf_width = self.size[1] if self.size else width
        return float(focal_px) * inf_width / width / trained

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None = None, *,
                loops: int | None = None, gate: str | None = None,
                budget_ms: float | None = None, focal_px: float | None = None,
                outputs=None) -> Prediction:
        """
        Predict one frame: `rgb` (H, W, 3) uint8, optional sensor `depth`.

        `depth` (h, w) metres with NaN (or <= 0) invalid, resampled nearest-neighbour when its size
        differs from the image's. `focal_px`: the camera's focal length at the image's size
        (CameraInfo K[0]), for cameras unlike the training one (camera_scale). `outputs`: which
        of OPTIONAL_OUTPUTS to compute (None: all) and of ON_REQUEST_OUTPUTS; labels and depth
        always are. Returns the last loop.
        """
        return self._predict(rgb, depth, loops, gate, budget_ms, focal_px, outputs,
                             last_only=True)[-1]

    def predict_loops(self, rgb: np.ndarray, depth: np.ndarray | None = None, *,
                      loops: int | None = None, gate: str | None = None,
                      budget_ms: float | None = None, focal_px: float | None = None,
                      outputs=None) -> list[Prediction]:
        """
        One Prediction per loop 0..L.

        All from a single pass of the network (the recurrent module's anytime outputs).
        `budget_ms`: run further loops (up to `loops`) only while the next one is expected to
        finish within this many milliseconds of the call; loop 0 always runs.
        """
        return self._predict(rgb, depth, loops, gate, budget_ms, focal_px, outputs,
                             last_only=False)

    @torch.inference_mode()
    def predict_batch(self, rgbs: Sequence[np.ndarray],
                      depths: Sequence[np.ndarray | None] | None = None,
                      focals: Sequence[float | None] | None = None, *,
                      loops: int | None = None, gate: str | None = None,
                      budget_ms: float | None = None, outputs=None) -> list[Prediction]:
        """
        Predict several frames (one per camera, say) in one pass of the network.

        Each frame is resized to the inference size (frames of different sizes need one) and
        its outputs come back at its own size. Each keeps its own gate decision: a frame with
        depth runs `hybrid` under `auto`, one without `predicted`, in the same batch, because
        the hybrid gate of a frame with no valid depth is exactly its predicted gate (every
        cell a hole: votes 0, hole 1). Gates that cannot share a pass that way (a `sensor`
        frame beside a `predicted` one) run as separate batches. `budget_ms` bounds the
        whole batch's loops, as `predict_loops` does one frame's. No test-time augmentation;
        a model that is not a torch module runs frame by frame.
        """
        t_start = time.perf_counter()
        n = len(rgbs)
        depths = list(depths) if depths is not None else [None] * n
        focals = list(focals) if focals is not None else [None] * n
        if not (len(depths) == len(focals) == n):
            raise ValueError(f'{n} images, {len(depths)} depth maps and {len(focals)} focal '
                             'lengths: give one of each per frame (None where there is none)')
        if self.tta_flip or self.tta_scales != (1.0,):
            raise ValueError('a batch needs a single view: turn test-time augmentation off')
        sizes = [_check_rgb(rgb) for rgb in rgbs]
        if self.size is None and len(set(sizes)) > 1:
            raise ValueError(f'frames of sizes {sorted(set(sizes))} need an inference size '
                             'to share a batch')
        gates = [decide_gate(self.model, gate or self.gate, d is not None) for d in depths]
        if not isinstance(self.model, torch.nn.Module):
            return [self.predict(r, d, loops=loops, gate=gate, budget_ms=budget_ms, focal_px=f,
                                 outputs=outputs) for r, d, f in zip(rgbs, depths, focals)]
        deadline = None if budget_ms is None else t_start + budget_ms / 1e3
        # one pass per gate the batch needs; frames without depth join the hybrid pass
        runs: dict[str, list[int]] = {}
        for i, g in enumerate(gates):
            runs.setdefault('hybrid' if g == 'predicted' and 'hybrid' in gates else g,
                            []).append(i)
        results: list[Prediction | None] = [None] * n
        for run, index in runs.items():
            for i, p in zip(index, self._predict_batch(
                    [rgbs[i] for i in index], [depths[i] for i in index],
                    [focals[i] for i in index], [sizes[i] for i in index], run,
                    self.loops if loops is None else loops, outputs, deadline)):
                results[i] = replace(p, gate_source=gates[i])
        return results

    def _predict_batch(self, rgbs, depths, focals, sizes, gate, loops, outputs, deadline):
        """Run frames through the network as one batch with one gate; NaN depth where none."""
        inf_size = self.size or sizes[0]
        image = torch.cat([_resize(image_input(rgb, self._mean, self._std, self.device),
                                   inf_size, 'bilinear') for rgb in rgbs])
        sensor = None
        if gate in DEPTH_GATES:
            sensor = torch.cat([
                _resize(_depth_tensor(d).to(self.device), inf_size, 'nearest') if d is not None
                else torch.full((1, 1, *inf_size), float('nan'), device=self.device)
                for d in depths])
        camera = torch.tensor([self.camera_scale(f, size[1]) for f, size in zip(focals, sizes)],
                              device=self.device).view(-1, 1, 1, 1)
        wanted = set(OPTIONAL_OUTPUTS if outputs is None else outputs)
        (loop, scores, log_depth, gate_w), = self._run_view(
            image, sensor, 1.0, False, loops, gate, inf_size, deadline, last_only=True,
            camera=camera, probabilities=False)
        part = lambda t, i: None if t is None else t[i:i + 1]   # noqa: E731
        return [self._finish(part(scores, i), part(log_depth, i), part(gate_w, i), size, gate,
                             loop, wanted, logits=True) for i, size in enumerate(sizes)]

    @torch.inference_mode()
    def _predict(self, rgb, depth, loops, gate, budget_ms, focal_px, outputs,
                 last_only: bool) -> list[Prediction]:
        """
        Predict one frame.

        `last_only`: post-process just the last loop (resizing and argmax at full resolution
        cost milliseconds per loop on a CPU).
        """
        t_start = time.perf_counter()
        h, w = _check_rgb(rgb)
        loops = self.loops if loops is None else loops
        if budget_ms is not None and (self.tta_flip or self.tta_scales != (1.0,)):
            raise ValueError('a latency budget needs a single view: turn test-time '
                             'augmentation off')
        # the frame's one gate decision; the model runs the gate it is given
        g = decide_gate(self.model, gate or self.gate, have_depth=depth is not None)
        image = image_input(rgb, self._mean, self._std, self.device)
        sensor = None
        if depth is not None and g in DEPTH_GATES:
            sensor = _depth_tensor(depth).to(self.device)
        inf_size = self.size or (h, w)
        camera = self.camera_scale(focal_px, w)
        image = _resize(image, inf_size, 'bilinear')
        if sensor is not None:
            sensor = _resize(sensor, inf_size, 'nearest')

        views = [(s, f) for s in self.tta_scales for f in ((False, True) if self.tta_flip
                                                           else (False,))]
        wanted = set(OPTIONAL_OUTPUTS if outputs is None else outputs)
        deadline = None if budget_ms is None else t_start + budget_ms / 1e3
        if len(views) == 1 and views[0][0] == 1.0:
            # One view: class logits at the network's own resolution, upsampled once below to
            # the image's size; softmax only where confidence is asked for.
            per_loop = self._run_view(image, sensor, 1.0, views[0][1], loops, g, inf_size,
                                      deadline, last_only, camera, probabilities=False)
            return [self._finish(scores, d, gw, (h, w), g, loop, wanted, logits=True)
                    for loop, scores, d, gw in per_loop]
        # per loop: summed class probabilities, log depth and gate weights over the views
        sums = None
        for scale, flip in views:
            per_loop = self._run_view(image, sensor, scale, flip, loops, g, inf_size,
                                      deadline, last_only, camera)
            sums = per_loop if sums is None else [
                (acc[0],) + tuple(a + b if a is not None else None for a, b in
                                  zip(acc[1:], new[1:]))
                for acc, new in zip(sums, per_loop)]
        return [self._finish(p / len(views), d / len(views) if d is not None else None,
                             gw / len(views) if gw is not None else None, (h, w), g, loop,
                             wanted, logits=False)
                for loop, p, d, gw in sums]

    def _finish(self, scores, log_depth, gate_w, size, gate, loop, wanted,
                logits: bool) -> Prediction:
        """
        Turn the network's outputs into the numpy outputs at the input's size.

        `scores` are class logits (`logits`) or probabilities; each map is resized once, from
        whatever resolution it has, and the optional outputs only when `wanted`.
        """
        # labels the same way whatever else is asked for, so enabling confidence cannot move a
        # label that sits on a float tie
        wide = self.cfg.num_classes > 255
        labels = _upsampled_argmax(scores, size, torch.int32 if wide else torch.uint8)
        conf = None
        if 'confidence' in wanted:
            # the top class's softmax probability, exp(top) / sum(exp(scores)), where the
            # network computes its scores; then one plane is enlarged, not every class's
            top = scores[0].max(0).values
            conf = (scores[0] - top).exp().sum(0).reciprocal_() if logits else top
            conf = _resize(conf[None, None], size, 'bilinear')[0, 0].float().cpu().numpy()
        depth = None
        if log_depth is not None:
            depth_m = _resize(log_depth, size, 'bilinear')
            # in place when the resize made a new map (a full-size temporary less)
            depth_m = depth_m.exp() if depth_m is log_depth else depth_m.exp_()
            if self.depth_blur_sigma > 0:
                s = self.depth_blur_sigma
                k = 2 * math.ceil(3 * s) + 1
                from torchvision.transforms.functional import gaussian_blur   # rarely used
                depth_m = gaussian_blur(depth_m, [k, k], [s, s])
            depth = depth_m[0, 0].float().cpu().numpy()
        class_scores = None
        if 'scores' in wanted:
            class_scores = _resize(scores, size, 'bilinear')[0].float().cpu().numpy()
        gate_map = None
        if gate_w is not None and 'gate' in wanted:
            gate_map = _upsampled_argmax(gate_w, size, torch.uint8)
            gate_map = np.ascontiguousarray(gate_map.cpu().numpy())
        # contiguous: an upsampled label map is a view into a slightly larger canvas
        labels = np.ascontiguousarray(labels.cpu().numpy(), np.uint16 if wide else np.uint8)
        return Prediction(labels=labels, depth=depth, confidence=conf, gate=gate_map,
                          gate_source=gate, loops=loop, scores=class_scores)

    def _sync(self) -> None:
        """Wait for queued GPU work, so a clock reading means the loop is done."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _network(self, image, sensor, loops: int, gate: str, deadline) -> list[dict]:
        """
        Run loop 0 and the refinements asked for: all of them, or those that fit the deadline.

        A shape or gate the compiled network has not seen compiles first: that frame runs every
        loop, untimed (its minute of compiling says nothing about a loop's cost).
        """
        key = (tuple(image.shape), gate, self.hard_gate)
        if self.compiled is None or self._eager_now or key in self.compiled:
            return self._loops(image, sensor, loops, gate, deadline)
        log.info('compiling the network for input %s, gate %s (torch.compile: about a minute '
                 'on 2 cores the first time, seconds from its cache afterwards)',
                 'x'.join(map(str, key[0])), gate)
        t0 = time.perf_counter()
        try:
            outs = self._loops(image, sensor, loops, gate, None)
        except torch._dynamo.exc.TorchDynamoException as e:
            # e.g. no C++ compiler for inductor's CPU kernels: eager still runs, only slower
            log.warning('torch.compile failed, running the network eager from now on: %s',
                        str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            self.compiled, self._compile_failed = None, True
            return self._loops(image, sensor, loops, gate, deadline)
        self.compiled.add(key)
        log.info('compiled in %.1f s', time.perf_counter() - t0)
        return outs

    def _loops(self, image, sensor, loops: int, gate: str, deadline) -> list[dict]:
        amp = torch.autocast('cuda', dtype=torch.float16) if self.fp16 else nullcontext()
        # parts compiled in place stay compiled: after a failed compilation they run eager
        stance = torch.compiler.set_stance('force_eager') \
            if self._compile_failed or self._eager_now else nullcontext()
        outs = []
        with amp, stance:
            steps = self.model.iter_loops(image, sensor, loops, gate, full_size=False)
            for loop in range(loops + 1):
                t0 = time.perf_counter()
                outs.append(next(steps))
                if deadline is None:
                    continue            # no budget: no clock, no GPU syncs
                self._sync()
                if loop > 0:
                    dt = time.perf_counter() - t0
                    self.loop_seconds = dt if self.loop_seconds is None else \
                        0.7 * self.loop_seconds + 0.3 * dt
                # before any refinement has been timed, assume it costs nothing extra
                if loop < loops and time.perf_counter() + (self.loop_seconds or 0.0) >= deadline:
                    break
        return outs

    def _run_view(self, image, sensor, scale, flip, loops, gate, inf_size, deadline=None,
                  last_only=False, camera=1.0, probabilities=True):
        """
        Run one test-time view.

        Returns, per loop, probabilities, log depth and gate weights at the inference size (views
        are averaged there), or with `probabilities=False` class logits, log depth and gate
        weights at the network's own resolution.
        Scaling the image by s makes everything look s times closer, so sensor depth goes in
        divided by s and predicted depth comes out multiplied by s (the same rule as the
        training augmentation, paper section 5); `camera` (camera_scale) acts the same way.
        """
        size = inf_size
        # a float, or (N, 1, 1, 1) with a value per frame of a batch (predict_batch)
        looks_closer = scale * camera
        if scale != 1.0:
            size = (max(8, round(inf_size[0] * scale)), max(8, round(inf_size[1] * scale)))
            image = _resize(image, size, 'bilinear')
            if sensor is not None:
                sensor = _resize(sensor, size, 'nearest')
        if sensor is not None and (torch.is_tensor(looks_closer) or looks_closer != 1.0):
            sensor = sensor / looks_closer
        if flip:
            image = image.flip(-1)
            sensor = sensor.flip(-1) if sensor is not None else None
        image = _canonical(image.contiguous(memory_format=self.memory_format),
                           self.memory_format)
        outs = self._network(image, sensor, loops, gate, deadline)
        results = []
        for loop, out in enumerate(outs):
            if last_only and loop < len(outs) - 1:
                continue
            seg, log_depth, gate_w = (None if out[k] is None else out[k].float()
                                      for k in ('seg', 'log_depth', 'gate'))
            if log_depth is not None:
                log_depth = log_depth + (looks_closer.log() if torch.is_tensor(looks_closer)
                                         else math.log(looks_closer))
            if probabilities:
                # views are averaged as probabilities on the inference grid
                seg = _resize(seg, size, 'bilinear').softmax(1)
                log_depth = _resize(log_depth, size, 'bilinear') if log_depth is not None \
                    else None
                gate_w = _resize(gate_w, size, 'bilinear') if gate_w is not None else None
            if flip:
                seg, log_depth, gate_w = (t.flip(-1) if t is not None else None
                                          for t in (seg, log_depth, gate_w))
            if probabilities:
                seg, log_depth, gate_w = (_resize(t, inf_size, 'bilinear') if t is not None
                                          else None for t in (seg, log_depth, gate_w))
            results.append((loop, seg, log_depth, gate_w))
        return results


def _check_rgb(rgb) -> tuple[int, int]:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f'rgb must be a numpy array, got {type(rgb).__name__}')
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'rgb must be an (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}')
    h, w = rgb.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f'rgb is empty: {rgb.shape}')
    return h, w


def _depth_tensor(depth) -> torch.Tensor:
    d = np.asarray(depth)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f'depth must be a non-empty (H, W) array, got shape {d.shape}')
    t = torch.from_numpy(np.require(d, np.float32, ['C', 'W']))
    t = torch.where(torch.isfinite(t) & (t > 0), t, torch.full_like(t, float('nan')))
    return t.view(1, 1, *d.shape)


def _canonical(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """
    Return `x` (dense in `memory_format`) with the strides a new tensor of its shape has.

    A view of the same memory: strides of size-1 dimensions (a batch of one) mean nothing, but
    they differ between a camera frame and a resized one, and a compiled network, which checks
    strides, would compile again for each.
    """
    strides = torch.empty(x.shape, device='meta', memory_format=memory_format).stride()
    return x if x.stride() == strides else x.as_strided(x.shape, strides)


def _resize_channels_last(x: torch.Tensor, size) -> torch.Tensor:
    # Channels last: the resize and a max over channels then read contiguous memory, where an
    # argmax across planes strides through the whole map once per class.
    return _resize(x.contiguous(memory_format=torch.channels_last), size, 'bilinear')


def _upsampled_argmax(x: torch.Tensor, size, dtype: torch.dtype) -> torch.Tensor:
    """Return the argmax over channels of (1, C, h, w) `x` bilinearly resized to `size`."""
    if integer_factor(x.shape[-2:], size):
        return upsampled_labels(x[0], size, dtype)   # exact scores only where cells disagree
    return _resize_channels_last(x, size)[0].max(0).indices.to(dtype)


# the largest grid side enlarged by matrix products rather than interpolate (see _resize)
_MATRIX_GRID = 40


def _resize(x: torch.Tensor, size, mode: str) -> torch.Tensor:
    size = tuple(int(v) for v in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == 'nearest':
        return F.interpolate(x, size=size, mode='nearest-exact')
    # Antialiasing only matters when shrinking; enlarging takes the faster plain kernel (the
    # same weights), or for planes on a coarse grid (the fast model's depth at stride 32) two
    # small matrix products, whose cost grows with the grid: below _MATRIX_GRID they beat
    # interpolate's kernel (test_label_upsampling and depthgate-bench compare the two).
    shrink = any(s < old for s, old in zip(size, x.shape[-2:]))
    if not shrink and x.is_contiguous() and max(x.shape[-2:]) <= _MATRIX_GRID:
        return upsampled_planes(x, size)
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrink)
