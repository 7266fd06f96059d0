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
perception_node's parameters, all generated from options.py's dataclasses.

Declarations (defaults, descriptors with ranges) and the one check that both start-up and `ros2
param set` go through. Each parameter is a field of PredictorOptions or PairingOptions (shared
with the command-line tools) or NodeOptions (the node's own), with one default and one
description; config/perception.yaml and README's parameter table are written from the same
fields (`python -m depthgate_ros.node.parameters` rewrites both; test_parameters holds them).

rclpy enforces the descriptors' ranges and types; `check` adds what a descriptor cannot say:
choices, CUDA present, positive TTA scales, classes, loops and gates the loaded model has,
camera names.

Named cameras (`cameras`) each get CAMERA_OPTIONS of their own, `<camera>.<option>`, declared at
configure (when the names are known) with the node's value as default, so a parameters file or
launch override of `front.sync_slop` wins, and undeclared at cleanup.
"""
from __future__ import annotations

from dataclasses import dataclass, Field, fields
from pathlib import Path
import re

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..frames import topic_name
from ..options import CAMERA_OPTIONS, NodeOptions, Options, PairingOptions, PredictorOptions

# Every parameter's dataclass, in the order they are declared, listed and written.
OPTION_CLASSES: tuple[type[Options], ...] = (NodeOptions, PredictorOptions, PairingOptions)
FIELDS: dict[str, Field] = {f.name: f for cls in OPTION_CLASSES for f in fields(cls)}


def _default(f: Field):
    return list(f.default) if isinstance(f.default, tuple) else f.default


def _descriptor(f: Field, prefix: str = '') -> ParameterDescriptor:
    meta = f.metadata
    d = ParameterDescriptor(description=prefix + meta['help'] +
                            (' (dynamic)' if meta['dynamic'] else ''))
    if meta['choices']:
        d.additional_constraints = 'one of: ' + ', '.join(meta['choices'])
    lo, hi = meta['lo'], meta['hi']
    if isinstance(lo, int) and isinstance(hi, int):
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    elif lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                     step=0.0)]
    return d


PARAMETERS = {name: (_default(f), _descriptor(f)) for name, f in FIELDS.items()}
# Read once at configure; changing them needs a restart (or cleanup, for the managed node).
STATIC = tuple(name for name, f in FIELDS.items() if not f.metadata['dynamic'])


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


# A camera name is one token of a ROS topic name: it prefixes the camera's topics.
CAMERA_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')


def camera_names(values: dict) -> tuple[str, ...]:
    """Return the `cameras` parameter's names; ('',) is the one unnamed camera."""
    return tuple(c.strip() for c in values.get('cameras', ['']))


def camera_parameter(camera: str, option: str) -> str:
    return f'{camera}.{option}'


def camera_values(values: dict, camera: str) -> dict:
    """Return `values` as `camera` sees them: its own `<camera>.<option>` over the node's."""
    own = {o: values[camera_parameter(camera, o)] for o in CAMERA_OPTIONS
           if camera and camera_parameter(camera, o) in values}
    return {**values, **own}


def _camera_problem(names: tuple[str, ...]) -> ParameterError | None:
    if names == ('',):
        return None
    if bad := [n for n in names if not CAMERA_NAME.fullmatch(n)]:
        return ParameterError('cameras', f'{bad[0]!r} is not a camera name: a letter, then '
                              'letters, digits or underscores (blank only for a single, '
                              'unnamed camera)')
    if len(set(names)) < len(names):
        return ParameterError('cameras', f'names repeat in {list(names)}')
    return None


def check(values: dict, model: ModelFacts | None = None) -> ParameterError | None:
    """
    Return the first problem with these parameter values, or None.

    `values` are all of them, or the ones a `param set` changes merged over the current ones,
    with any `<camera>.<option>` declared. Model-dependent rules need `model`.
    """
    if problem := _camera_problem(camera_names(values)):
        return problem
    for camera in camera_names(values):
        for cls in OPTION_CLASSES:
            if found := cls.from_values(camera_values(values, camera)).problem():
                name, reason = found
                if camera_parameter(camera, name) in values:
                    name = camera_parameter(camera, name)
                return ParameterError(name, reason)
    predictor = PredictorOptions.from_values(values)
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
    for name, (default, descriptor) in PARAMETERS.items():
        _declare(node, name, default, descriptor)
    return {name: node.get_parameter(name).value for name in PARAMETERS}


def _declare(node, name: str, default, descriptor: ParameterDescriptor) -> None:
    from rclpy.exceptions import ParameterException
    try:
        node.declare_parameter(name, default, descriptor)
    except ParameterException as e:
        reason = str(e).split('Reason: ', 1)[-1]
        raise ParameterError(name, reason.removesuffix(f': {name}')) from None


def declare_cameras(node, cameras: tuple[str, ...]) -> list[str]:
    """
    Declare `<camera>.<option>` for named cameras, defaulting to the node's value.

    Returns the names declared (undeclared again at cleanup).
    """
    declared = []
    for camera in (c for c in cameras if c):
        for option in CAMERA_OPTIONS:
            name = camera_parameter(camera, option)
            if not node.has_parameter(name):
                _declare(node, name, node.get_parameter(option).value,
                         _descriptor(FIELDS[option], f'camera {camera}: '))
            declared.append(name)
    return declared


def is_static(name: str) -> bool:
    """Tell whether a parameter (a node's or a camera's) is read only at configure."""
    return name.rsplit('.', 1)[-1] in STATIC


# -- the parameters file and README's table, written from the fields -----------------------

_YAML_HEAD = """\
# Parameters of depthgate_ros' perception_node (ROS 2 parameters file), at their defaults.
# Written from depthgate_ros/options.py by `python -m depthgate_ros.node.parameters`.
# `ros2 param describe` shows the same descriptions and ranges. "dynamic" ones can be changed
# at run time with `ros2 param set`; the rest need a restart.
# `/**` applies them to the node under any namespace and name the launch file gives it.
/**:
  ros__parameters:
"""
TABLE_BEGIN = '<!-- parameters: written by `python -m depthgate_ros.node.parameters` -->'
TABLE_END = '<!-- end of parameters -->'


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return f'"{value}"' if value == '' or not re.fullmatch(r'[\w.:\-]+', value) else value
    if isinstance(value, list):
        return '[' + ', '.join(_yaml_value(v) for v in value) + ']'
    return repr(value)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ''
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f'{line} {word}' if line else word
    return lines + [line]


def parameters_yaml() -> str:
    """Return config/perception.yaml: every parameter at its default, its description above."""
    out = [_YAML_HEAD.rstrip('\n')]
    for name, f in FIELDS.items():
        text = f.metadata['help'] + (' (dynamic)' if f.metadata['dynamic'] else '')
        out += ['    # ' + line for line in _wrap(text, 90)]
        out.append(f'    {name}: {_yaml_value(_default(f))}')
    return '\n'.join(out) + '\n'


def parameters_table() -> str:
    """Return README's parameter table (between its markers)."""
    rows = [TABLE_BEGIN, '', '| parameter | default | dynamic | meaning |', '|---|---|---|---|']
    for name, f in FIELDS.items():
        meta = f.metadata
        text = meta['help'] + (f" ({', '.join(f'`{c}`' for c in meta['choices'])})"
                               if meta['choices'] else '')
        dynamic = 'yes' if meta['dynamic'] else 'no'
        rows.append(f'| `{name}` | `{_yaml_value(_default(f))}` | {dynamic} | '
                    f"{text.replace('|', '/')} |")
    return '\n'.join(rows + ['', TABLE_END])


def write_files(root: Path) -> None:
    """Rewrite config/perception.yaml and README's table under `root` (a source checkout)."""
    (root / 'config' / 'perception.yaml').write_text(parameters_yaml())
    readme = root / 'README.md'
    text = readme.read_text()
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    readme.write_text(text[:start] + parameters_table() + text[end:])


if __name__ == '__main__':
    write_files(Path(__file__).resolve().parents[2])
