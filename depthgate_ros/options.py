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
Run-time options, declared once: the node's parameters and every tool's flags come from here.

PredictorOptions holds everything that shapes a Predictor, PairingOptions how sensor depth is
paired with images, NodeOptions what only the node has (model path, threads, QoS, transports,
outputs). perception_node declares a parameter per field of all three (node/parameters.py,
which also writes config/perception.yaml and README's parameter table from them);
depthgate-eval, depthgate-bag-eval and depthgate-demo add a flag per field of the first two
(`add_arguments`), and training validation builds its Predictor through PredictorOptions too,
so every tool has the same options under the same names (`--tta-scales` is the parameter
`tta_scales`) with the same checks (`problem`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
import re
from typing import Any

from .model.config import CALL_GATES
from .weights import ALIASES, BUNDLED


def option(default, text: str, *, lo=None, hi=None, choices=None, dynamic=False,
           aliases: tuple[str, ...] = ()):
    """
    Declare a field with its documentation and limits.

    `dynamic`: the node may change it while running. `aliases`: older flag spellings.
    """
    return field(default=default, metadata={'help': text, 'lo': lo, 'hi': hi,
                                            'choices': choices, 'dynamic': dynamic,
                                            'aliases': aliases})


@dataclass(frozen=True)
class Options:
    """Shared behaviour: building from a dict of values and from parsed flags."""

    @classmethod
    def from_values(cls, values: dict) -> 'Options':
        """Take the fields present in `values` (e.g. node parameters); defaults for the rest."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in values.items() if k in names})

    def problem(self) -> tuple[str, str] | None:
        """Return (option, reason) for the first value that cannot work, or None."""
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta['choices'] and value not in meta['choices']:
                return f.name, f"{value!r} is not one of {', '.join(meta['choices'])}"
            if meta['lo'] is not None and not meta['lo'] <= value <= meta['hi']:
                return f.name, f"{value} is outside [{meta['lo']}, {meta['hi']}]"
        return None


@dataclass(frozen=True)
class PredictorOptions(Options):
    device: str = option('auto', 'auto | cpu | cuda[:N]; auto picks CUDA when present')
    fp16: bool = option(False, 'float16 autocast (CUDA only)')
    channels_last: bool = option(True, 'channels-last memory format (torch models; faster for '
                                       'the MobileNetV3 and ESPNetv2 models on a CPU)')
    compile: bool = option(  # noqa: A003  (torch.compile's own word)
        True, 'torch.compile the network (torch models): a CPU runs the street model in about '
        'two thirds of the eager time; the first frame of each input size and gate waits for '
        'the compilation (about a minute on 2 cores, seconds from the cache of an earlier '
        'run), unless the node compiled at its inference size in configure; where it cannot '
        'compile (no C++ compiler), the network runs eager, with a warning')
    inference_height: int = option(0, "inference resolution, 0 = the input's own", lo=0,
                                   hi=4096)
    inference_width: int = option(0, "inference resolution, 0 = the input's own", lo=0,
                                  hi=8192)
    loops: int = option(-1, "recurrent loops, -1 = the model's default", lo=-1, hi=8,
                        dynamic=True)
    gate_source: str = option(
        'auto', 'auto = hybrid (sensor depth, predicted in its holes) when depth is paired, '
        'else predicted; a baseline model runs only auto, an .onnx file only the gate it was '
        'exported with', choices=('auto',) + CALL_GATES, dynamic=True, aliases=('--gate',))
    hard_gate: bool = option(False, 'gate on the most likely depth bin only (any gate '
                             'source; cells without sensor depth stay uniform), so the gating '
                             'module evaluates one branch per pixel (sparse gating)',
                             dynamic=True)
    tta_flip: bool = option(False, 'flip test-time augmentation')
    tta_scales: tuple[float, ...] = option((1.0,), 'test-time scales, each > 0')
    depth_blur_sigma: float = option(0.0, 'Gaussian smoothing of predicted depth (pixels)',
                                     lo=0.0, hi=50.0, aliases=('--depth-blur',))

    def problem(self) -> tuple[str, str] | None:
        if reason := device_problem(self.device):
            return 'device', reason
        if found := super().problem():
            return found
        size = self.inference_height, self.inference_width
        if (0 in size and size != (0, 0)) or 0 < min(size) < 8:
            return ('inference_height' if size[0] < 8 else 'inference_width',
                    f"inference size {size[0]}x{size[1]}: both 0 (the input's own) or both "
                    'at least 8')
        if not self.tta_scales or min(self.tta_scales) <= 0:
            return 'tta_scales', f'every scale must be > 0, got {list(self.tta_scales)}'
        return None

    @property
    def single_view(self) -> bool:
        """Tell whether test-time augmentation is off (what a latency budget needs)."""
        return not self.tta_flip and tuple(self.tta_scales) == (1.0,)

    def predictor_kwargs(self) -> dict[str, Any]:
        """
        Keyword arguments of Predictor / Predictor.from_checkpoint.

        Loops and hard gate only where they differ from the model's own (an export fixes both).
        """
        size = (self.inference_height, self.inference_width) if self.inference_height else None
        kwargs = {'device': self.device, 'fp16': self.fp16, 'channels_last': self.channels_last,
                  'size': size, 'gate': self.gate_source, 'tta_scales': tuple(self.tta_scales),
                  'tta_flip': self.tta_flip, 'depth_blur_sigma': self.depth_blur_sigma,
                  'compile': self.compile}
        if self.loops >= 0:
            kwargs['loops'] = self.loops
        if self.hard_gate:
            kwargs['hard_gate'] = True
        return kwargs

    def load(self, path):
        """Return a Predictor for the checkpoint (or .onnx file) at `path`."""
        from .inference import Predictor
        if found := self.problem():
            raise ValueError(f'{found[0]}: {found[1]}')
        return Predictor.from_checkpoint(path, **self.predictor_kwargs())


@dataclass(frozen=True)
class PairingOptions(Options):
    sync_slop: float = option(0.05, 'max stamp difference (s) for an image/depth pair',
                              lo=0.0, hi=1.0, dynamic=True)
    depth_timeout: float = option(0.5, 'wait at most this long (s) for depth; silent depth '
                                  'for this long means monocular', lo=0.0, hi=10.0,
                                  dynamic=True)
    depth_unit_scale: float = option(0.001, 'metres per unit of 16UC1 depth', lo=1e-6, hi=1.0,
                                     dynamic=True)


# What each camera of several may set for itself, as the parameter `<camera>.<option>` (its
# default: the node's own value); everything else is shared by the cameras.
CAMERA_OPTIONS = ('sync_slop', 'depth_unit_scale', 'image_transport', 'depth_transport')

# image_transport's names: `<image>/compressed` and `<depth>/compressedDepth` are the topics.
IMAGE_TRANSPORTS = ('raw', 'compressed')
DEPTH_TRANSPORTS = ('raw', 'compressedDepth')


@dataclass(frozen=True)
class NodeOptions(Options):
    """The node's own parameters, beside the options it shares with the tools."""

    model_path: str = option('', 'checkpoint or .onnx file, or a bundled model: ' + ', '.join(
        name + ''.join(f' (also {alias}{", or empty" if alias == "default" else ""})'
                       for alias, to in ALIASES.items() if to == name) for name in BUNDLED))
    num_threads: int = option(0, "torch CPU threads, 0 = torch's default (one per core); "
                              'bound it on a robot running other nodes', lo=0, hi=256)
    latency_budget_ms: float = option(
        0.0, 'anytime refinement: run only the recurrent loops that fit in this many ms per '
        'frame (loop 0 always runs; ~/frame_info reports the loops used), 0 = always `loops`; '
        'needs test-time augmentation off', lo=0.0, hi=10000.0, dynamic=True)
    input_reliability: str = option('best_effort', 'QoS reliability of the inputs',
                                    choices=('best_effort', 'reliable'))
    image_transport: str = option('raw', 'raw: `image` (sensor_msgs/Image); compressed: '
                                  '`image/compressed` (jpeg or png CompressedImage), below '
                                  'the remapped name as image_transport does',
                                  choices=IMAGE_TRANSPORTS)
    depth_transport: str = option('raw', 'raw: `depth` (REP 118 Image); compressedDepth: '
                                  "`depth/compressedDepth` (image_transport's png format)",
                                  choices=DEPTH_TRANSPORTS)
    input_queue_depth: int = option(5, 'QoS history depth of depth, disparity and camera_info '
                                    '(images: 1, only the newest is ever processed)', lo=1,
                                    hi=100)
    publish_labels: bool = option(True, 'publish ~/labels: class ids, mono8', dynamic=True)
    publish_labels_color: bool = option(True, 'publish ~/labels_color: the palette, rgb8',
                                        dynamic=True)
    publish_depth: bool = option(True, 'publish ~/depth: metres, 32FC1', dynamic=True)
    publish_confidence: bool = option(False, "publish ~/confidence: the top class's softmax "
                                      "probability at the network's resolution, enlarged, "
                                      '32FC1', dynamic=True)
    publish_gate: bool = option(True, 'publish ~/gate: the dominant gating branch, mono8, 0 '
                                '(far) .. 4 (near)', dynamic=True)
    publish_points: bool = option(False, 'publish ~/points: PointCloud2 x y z rgb label; '
                                  'needs camera_info', dynamic=True)
    labels_color_alpha: float = option(0.0, 'blend of the image over ~/labels_color', lo=0.0,
                                       hi=1.0, dynamic=True)
    mask_classes: tuple[str, ...] = option(
        ('',), 'class names published as ~/masks/<name> (e.g. [road, person, car]); spaces '
        'become underscores in topic names; blank entries are ignored', dynamic=True)
    diagnostics_period: float = option(1.0, 'seconds between /diagnostics messages', lo=0.1,
                                       hi=60.0)
    cameras: tuple[str, ...] = option(
        ('',), 'camera names (e.g. [front, left, right]): each reads <name>/image, '
        '<name>/depth, <name>/disparity and <name>/camera_info, publishes under ~/<name>/ and '
        'may set <name>.' + ', <name>.'.join(CAMERA_OPTIONS) +
        '; one model serves them all, in batches. One blank entry: one camera on image, depth, '
        '... and outputs under ~/')
    max_batch: int = option(0, 'at most this many cameras per batch, 0 = one frame of every '
                            'camera that has one; a camera left out goes first next time',
                            lo=0, hi=64)


def device_problem(spec: str) -> str | None:
    if not re.fullmatch(r'auto|cpu|cuda(:\d+)?', spec):
        return f'{spec!r} is not one of auto, cpu, cuda[:N]'
    if not spec.startswith('cuda'):
        return None                 # auto falls back to the CPU (with a warning of its own)
    from .inference import resolve_device
    try:
        resolve_device(spec)
    except (ValueError, RuntimeError) as e:
        return str(e)
    return None


def add_arguments(parser: argparse.ArgumentParser, cls: type[Options], *,
                  several: tuple[str, ...] = ()) -> None:
    """
    Add a flag per field of `cls`: `--tta-scales` for tta_scales, and so on.

    Fields in `several` take one or more values (a list in the parsed arguments).
    """
    group = parser.add_argument_group(cls.__name__)
    for f in fields(cls):
        meta = f.metadata
        flags = ['--' + f.name.replace('_', '-'), *meta['aliases']]
        kwargs = {'dest': f.name, 'help': meta['help']}
        if meta['choices']:
            kwargs['choices'] = meta['choices']
        if isinstance(f.default, bool):
            # --x / --no-x around the field's default (a store_true flag could not turn off an
            # option that defaults to on, such as channels_last)
            group.add_argument(*flags, action=argparse.BooleanOptionalAction,
                               default=f.default, **kwargs)
        elif isinstance(f.default, tuple):
            group.add_argument(*flags, type=type(f.default[0]), nargs='+',
                               default=list(f.default), **kwargs)
        elif f.name in several:
            group.add_argument(*flags, type=type(f.default), nargs='+', default=[f.default],
                               **kwargs)
        else:
            group.add_argument(*flags, type=type(f.default), default=f.default, **kwargs)


def from_args(cls: type[Options], args: argparse.Namespace, **changes) -> Options:
    """Build `cls` from parsed flags; `changes` replace values (e.g. one of several)."""
    return cls.from_values({**vars(args), **changes})


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
               *classes: type[Options]) -> None:
    """Stop with a usage error (exit 2) naming the flag, before any work starts."""
    for cls in classes:
        single = {f.name for f in fields(cls) if not isinstance(f.default, tuple)}
        # a field given several values (`several`) was checked by argparse's choices
        values = {k: v for k, v in vars(args).items()
                  if not (k in single and isinstance(v, list))}
        if found := cls.from_values(values).problem():
            parser.error(f"--{found[0].replace('_', '-')}: {found[1]}")
