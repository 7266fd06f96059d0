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
param set` go through. The Predictor and pairing options are options.py's dataclasses, so the
node and the command-line tools share names, defaults, limits and checks; this module adds the
node's own (model path, QoS, transports, outputs).

rclpy enforces the descriptors' ranges and types; `check` adds what a descriptor cannot say:
choices, CUDA present, positive TTA scales, classes, loops and gates the loaded model has.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..frames import IMAGE_OUTPUTS, topic_name
from ..options import Options, PairingOptions, PredictorOptions

RELIABILITY_CHOICES = ('best_effort', 'reliable')
# image_transport's names: `<image>/compressed` and `<depth>/compressedDepth` are the topics.
IMAGE_TRANSPORTS = ('raw', 'compressed')
DEPTH_TRANSPORTS = ('raw', 'compressedDepth')


def _desc(text: str, *, lo=None, hi=None, choices=None, dynamic=False) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text + (' (dynamic)' if dynamic else ''))
    if choices:
        d.additional_constraints = 'one of: ' + ', '.join(choices)
    if isinstance(lo, int) and isinstance(hi, int):
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    elif lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                     step=0.0)]
    return d


def _param(default, text: str, *, lo=None, hi=None, choices=None, dynamic=False) -> tuple:
    """One parameter: (default, descriptor, dynamic, choices)."""
    return default, _desc(text, lo=lo, hi=hi, choices=choices, dynamic=dynamic), dynamic, choices


def _from_options(cls: type[Options]) -> dict:
    return {f.name: _param(list(f.default) if isinstance(f.default, tuple) else f.default,
                           f.metadata['help'], lo=f.metadata['lo'], hi=f.metadata['hi'],
                           choices=f.metadata['choices'], dynamic=f.metadata['dynamic'])
            for f in fields(cls)}


# The node's own parameters, beside the options it shares with the tools.
_NODE = {
    'model_path': _param('', 'checkpoint or .onnx file, or a bundled model: street (also '
                         'default, or empty), synthetic_fast (also fast), synthetic_resnet18'),
    'num_threads': _param(0, "torch CPU threads, 0 = torch's default; bound it on a robot "
                          'running other nodes', lo=0, hi=256),
    'latency_budget_ms': _param(0.0, 'anytime refinement: run only the recurrent loops that '
                                'fit in this many ms per frame, 0 = always `loops` (needs '
                                'TTA off)', lo=0.0, hi=10000.0, dynamic=True),
    'input_reliability': _param('best_effort', 'QoS reliability of the inputs',
                                choices=RELIABILITY_CHOICES),
    'image_transport': _param('raw', 'raw: `image` (sensor_msgs/Image); compressed: '
                              '`image/compressed` (jpeg or png CompressedImage)',
                              choices=IMAGE_TRANSPORTS),
    'depth_transport': _param('raw', 'raw: `depth` (REP 118 Image); compressedDepth: '
                              "`depth/compressedDepth` (image_transport's png format)",
                              choices=DEPTH_TRANSPORTS),
    'input_queue_depth': _param(5, 'QoS history depth of depth, disparity and camera_info '
                                '(images: 1, only the newest is ever processed)', lo=1, hi=100),
    **{f'publish_{name}': _param(name not in ('confidence', 'points'), f'publish ~/{name}' + (
        ', needs camera_info' if name == 'points' else ''), dynamic=True)
       for name in IMAGE_OUTPUTS + ('points',)},
    'labels_color_alpha': _param(0.0, 'blend of the image over ~/labels_color', lo=0.0,
                                 hi=1.0, dynamic=True),
    'mask_classes': _param([''], 'class names published as ~/masks/<name>; spaces become '
                           'underscores in topic names', dynamic=True),
    'diagnostics_period': _param(1.0, 'seconds between /diagnostics messages', lo=0.1,
                                 hi=60.0),
}
_ALL = {**_from_options(PredictorOptions), **_from_options(PairingOptions), **_NODE}
PARAMETERS = {name: (default, desc) for name, (default, desc, _, _) in _ALL.items()}
# Read once at configure; changing them needs a restart (or cleanup, for the managed node).
STATIC = tuple(name for name, (_, _, dynamic, _) in _ALL.items() if not dynamic)
# The node's own choice parameters (the shared options check theirs in Options.problem).
CHOICES = {name: choices for name, (_, _, _, choices) in _NODE.items() if choices}


class ParameterError(ValueError):
    """A parameter value the node cannot run with: names the parameter and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f'parameter {name}: {reason}')
        self.name, self.reason = name, reason


@dataclass(frozen=True)
class ModelFacts:
    """What the loaded model allows: class names (as topic names), loops, gate sources."""

    classes: frozenset
    recurrent: bool
    gates: tuple[str, ...]


def check(values: dict, model: ModelFacts | None = None) -> ParameterError | None:
    """
    Return the first problem with these parameter values, or None.

    `values` are all of them, or the ones a `param set` changes merged over the current ones.
    Model-dependent rules need `model`.
    """
    predictor = PredictorOptions.from_values(values)
    for options in (predictor, PairingOptions.from_values(values)):
        if found := options.problem():
            return ParameterError(*found)
    for name, choices in CHOICES.items():
        if name in values and values[name] not in choices:
            return ParameterError(name, f'{values[name]!r} is not one of ' + ', '.join(choices))
    if values.get('latency_budget_ms', 0.0) > 0 and not predictor.single_view:
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
        if values.get('gate_source', 'auto') not in model.gates:
            return ParameterError('gate_source', f"this model runs with {', '.join(model.gates)}"
                                  f", not {values['gate_source']!r}")
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
