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
perception_node's parameters.

Declarations (defaults, descriptors with ranges) and the one check that both start-up and `ros2
param set` go through.

rclpy enforces the descriptors' ranges and types; `check` adds what a descriptor cannot say:
choices, CUDA present, positive TTA scales, classes and loops the loaded model has.
"""
from __future__ import annotations

from dataclasses import dataclass
import re

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..model.config import CALL_GATES

GATE_CHOICES = ('auto',) + CALL_GATES
RELIABILITY_CHOICES = ('best_effort', 'reliable')


def _desc(text: str, *, lo=None, hi=None, step=None, choices=None) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text)
    if choices:
        d.additional_constraints = 'one of: ' + ', '.join(choices)
    if isinstance(lo, int) and isinstance(hi, int):
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step or 1)]
    elif lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                     step=float(step or 0.0))]
    return d


PARAMETERS = {
    # name: (default, descriptor)
    'model_path': ('', _desc('checkpoint file; empty = the model bundled with the package')),
    'device': ('auto', _desc('auto | cpu | cuda[:N]; auto picks CUDA when present')),
    'fp16': (False, _desc('float16 autocast (CUDA only)')),
    'channels_last': (False, _desc('channels-last memory format')),
    'num_threads': (0, _desc("torch CPU threads, 0 = torch's default; bound it on a robot "
                             'running other nodes', lo=0, hi=256)),
    'inference_height': (0, _desc("inference resolution, 0 = the input's own", lo=0, hi=4096)),
    'inference_width': (0, _desc("inference resolution, 0 = the input's own", lo=0, hi=8192)),
    'loops': (-1, _desc("recurrent loops, -1 = the model's default (dynamic)", lo=-1, hi=8)),
    'latency_budget_ms': (0.0, _desc('anytime refinement: run only the recurrent loops that '
                                     'fit in this many ms per frame, 0 = always `loops` '
                                     '(dynamic; needs TTA off)', lo=0.0, hi=10000.0)),
    'hard_gate': (False, _desc('gate on the most likely depth bin only (any gate source), '
                               'so the gating module runs sparse (dynamic)')),
    'gate_source': ('auto', _desc('auto = hybrid (sensor depth, predicted in its holes) when '
                                  'depth is paired, else predicted (dynamic)',
                                  choices=GATE_CHOICES)),
    'sync_slop': (0.05, _desc('max stamp difference (s) for an image/depth pair (dynamic)',
                              lo=0.0, hi=1.0)),
    'depth_timeout': (0.5, _desc('wait at most this long (s) for depth; silent depth for '
                                 'this long means monocular (dynamic)', lo=0.0, hi=10.0)),
    'depth_unit_scale': (0.001, _desc('metres per unit of 16UC1 depth (dynamic)',
                                      lo=1e-6, hi=1.0)),
    'input_reliability': ('best_effort', _desc('QoS reliability of the inputs',
                                               choices=RELIABILITY_CHOICES)),
    'input_queue_depth': (5, _desc('QoS history depth of depth, disparity and camera_info '
                                   '(images: 1, only the newest is ever processed)',
                                   lo=1, hi=100)),
    'publish_labels': (True, _desc('publish ~/labels (dynamic)')),
    'publish_labels_color': (True, _desc('publish ~/labels_color (dynamic)')),
    'publish_depth': (True, _desc('publish ~/depth (dynamic)')),
    'publish_confidence': (False, _desc('publish ~/confidence (dynamic)')),
    'publish_gate': (True, _desc('publish ~/gate (dynamic)')),
    'publish_points': (False, _desc('publish ~/points, needs camera_info (dynamic)')),
    'labels_color_alpha': (0.0, _desc('blend of the image over ~/labels_color (dynamic)',
                                      lo=0.0, hi=1.0)),
    'mask_classes': ([''], _desc('class names published as ~/masks/<name> (dynamic); '
                                 'spaces become underscores in topic names')),
    'tta_flip': (False, _desc('flip test-time augmentation')),
    'tta_scales': ([1.0], _desc('test-time scales, each > 0')),
    'depth_blur_sigma': (0.0, _desc('Gaussian smoothing of predicted depth (pixels)',
                                    lo=0.0, hi=50.0)),
    'diagnostics_period': (1.0, _desc('seconds between /diagnostics messages', lo=0.1,
                                      hi=60.0)),
}
# Read once at start; changing them needs a restart.
STATIC = ('model_path', 'device', 'fp16', 'channels_last', 'num_threads', 'inference_height',
          'inference_width', 'input_reliability', 'input_queue_depth', 'tta_flip',
          'tta_scales', 'depth_blur_sigma', 'diagnostics_period')


class ParameterError(ValueError):
    """A parameter value the node cannot run with: names the parameter and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f'parameter {name}: {reason}')
        self.name, self.reason = name, reason


@dataclass(frozen=True)
class ModelFacts:
    """What the loaded model allows: its class names (as topic names) and whether it loops."""

    classes: frozenset
    recurrent: bool


def topic_name(class_name: str) -> str:
    return ''.join(c if c.isalnum() else '_' for c in class_name.strip())


def _device_problem(spec: str) -> str | None:
    if not re.fullmatch(r'auto|cpu|cuda(:\d+)?', spec):
        return f'{spec!r} is not one of auto, cpu, cuda[:N]'
    if not spec.startswith('cuda'):
        return None                 # auto falls back to the CPU (with a warning of its own)
    from ..inference import resolve_device
    try:
        resolve_device(spec)
    except (ValueError, RuntimeError) as e:
        return str(e)
    return None


def check(values: dict, model: ModelFacts | None = None) -> ParameterError | None:
    """
    Return the first problem with these parameter values, or None.

    `values` are all of them, or the ones a `param set` changes merged over the current ones.
    Model-dependent rules need `model`.
    """
    if 'device' in values and (reason := _device_problem(values['device'])):
        return ParameterError('device', reason)
    if values.get('gate_source', 'auto') not in GATE_CHOICES:
        return ParameterError('gate_source', f"{values['gate_source']!r} is not one of "
                              + ', '.join(GATE_CHOICES))
    if values.get('input_reliability', 'best_effort') not in RELIABILITY_CHOICES:
        return ParameterError('input_reliability', f"{values['input_reliability']!r} is not "
                              'one of ' + ', '.join(RELIABILITY_CHOICES))
    size = values.get('inference_height', 0), values.get('inference_width', 0)
    if (0 in size and size != (0, 0)) or 0 < min(size) < 8:
        return ParameterError('inference_height' if size[0] < 8 else 'inference_width',
                              f"inference size {size[0]}x{size[1]}: both 0 (the input's "
                              'own) or both at least 8')
    scales = list(values.get('tta_scales', [1.0]))
    if not scales or min(scales) <= 0:
        return ParameterError('tta_scales', f'every scale must be > 0, got {scales}')
    single_view = not values.get('tta_flip', False) and scales == [1.0]
    if values.get('latency_budget_ms', 0.0) > 0 and not single_view:
        return ParameterError('latency_budget_ms', 'a latency budget needs test-time '
                              'augmentation off (tta_flip, tta_scales)')
    if model is not None:
        unknown = [c for c in values.get('mask_classes', []) if c.strip() and
                   topic_name(c) not in model.classes]
        if unknown:
            return ParameterError('mask_classes', f'unknown classes {unknown}; the model '
                                  f'has {sorted(model.classes)}')
        if values.get('loops', -1) > 0 and not model.recurrent:
            return ParameterError('loops', 'this model has no recurrent module')
    return None


def declare(node) -> dict:
    """
    Declare every parameter on `node` and return their values.

    A value rclpy refuses (out of range, wrong type) becomes a ParameterError naming it.
    """
    from rclpy.exceptions import ParameterException
    for name, (default, descriptor) in PARAMETERS.items():
        try:
            node.declare_parameter(name, default, descriptor)
        except ParameterException as e:
            reason = str(e).split('Reason: ', 1)[-1]
            raise ParameterError(name, reason.removesuffix(f': {name}')) from None
    return {name: node.get_parameter(name).value for name in PARAMETERS}
