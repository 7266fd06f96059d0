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
One function to save a model, one to load it.

A checkpoint is a torch zip file holding only tensors and plain containers, so it loads with
`torch.load(weights_only=True)` and no pickled code is ever executed:

    format: "depthgate_ros.checkpoint", version: 1
    config: ModelConfig.to_dict()   (architecture, depth bin edges, default loops and gate)
    state_dict: model weights
    info: class_names, colors, mean, std (input normalisation), provenance
    extra: optional training state (optimizer, schedule, RNG), ignored by inference
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import os
from pathlib import Path
import pickle
import tempfile
import zipfile

import torch

from .config import ModelConfig
from .network import build_model, DepthGatedNet
from .state import state_mismatch
from ..files import public_mode
from ..weights import resolve_model

FORMAT = 'depthgate_ros.checkpoint'
VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointError(Exception):
    """Base class: the checkpoint at `path` cannot be used."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    pass


class CorruptCheckpointError(CheckpointError):
    pass


class NotACheckpointError(CheckpointError):
    pass


class UnsafeCheckpointError(CheckpointError):
    pass


class CheckpointMismatchError(CheckpointError):
    pass


@dataclass
class ModelInfo:
    """What a user of the model needs besides the weights."""

    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    provenance: dict = field(default_factory=dict)
    # Focal length in pixels of the training images at the size trained on: the scale at which
    # the network learned what near and far look like (None: unknown).
    focal_px: float | None = None

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.colors = tuple(tuple(int(v) for v in c) for c in self.colors)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if len(self.colors) != len(self.class_names):
            raise ValueError(f'{len(self.class_names)} class names but {len(self.colors)} colours')


def save_checkpoint(path: str | Path, model: DepthGatedNet, info: ModelInfo,
                    extra: dict | None = None, half: bool = False) -> Path:
    """
    Write atomically (temp file + rename): a crash never leaves a half-written checkpoint.

    `half` stores floating-point weights as float16 (half the size, e.g. for a model shipped in the
    package); loading converts them back to the model's float32.
    """
    if len(info.class_names) != model.cfg.num_classes:
        raise CheckpointMismatchError(
            f'model has {model.cfg.num_classes} classes but info names {len(info.class_names)}')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        'format': FORMAT,
        'version': VERSION,
        'config': model.cfg.to_dict(),
        'state_dict': {k: (v.detach().cpu().half() if half and v.is_floating_point()
                           else v.detach().cpu()) for k, v in model.state_dict().items()},
        'info': {**asdict(info), 'class_names': list(info.class_names),
                 'colors': [list(c) for c in info.colors],
                 'mean': list(info.mean), 'std': list(info.std)},
        'extra': extra or {},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    try:
        os.fchmod(fd, public_mode())
        with os.fdopen(fd, 'wb') as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location='cpu') -> dict:
    """
    Read the raw payload, validated for format; raise a CheckpointError naming the problem.

    `path` may also name a bundled model (weights.NAMES: street, default, ...).
    """
    try:
        path = resolve_model(path)
    except FileNotFoundError as e:
        raise CheckpointNotFoundError(str(e)) from None
    if not path.is_file():
        raise CheckpointNotFoundError(f'checkpoint not found: {path}')
    if not zipfile.is_zipfile(path):
        raise CorruptCheckpointError(
            f'{path} is corrupt or not a torch file (no zip archive inside; truncated copy?)')
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any global it does not know: classes, functions, lambdas.
        raise UnsafeCheckpointError(
            f'{path} was refused: it contains pickled Python objects beyond tensors and plain '
            f'containers, which could run code when loaded ({str(e).splitlines()[-1][:200]})'
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CorruptCheckpointError(f'{path} is corrupt: {e}') from e
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        keys = sorted(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise NotACheckpointError(
            f'{path} is a torch file but not a depthgate_ros checkpoint (found {keys}); '
            'a bare state dict has no architecture, classes or depth bins to rebuild from')
    if payload.get('version') != VERSION:
        raise NotACheckpointError(
            f"{path} has checkpoint version {payload.get('version')}, "
            f'this package reads {VERSION}')
    return payload


def load_checkpoint(path: str | Path, map_location='cpu',
                    num_classes: int | None = None) -> tuple[DepthGatedNet, ModelInfo, dict]:
    """
    Rebuild the model; returns (model in eval mode, info, extra).

    `num_classes`, when given, is what the caller expects (e.g. a dataset's class count).
    """
    payload = read_checkpoint(path, map_location)
    try:
        cfg = ModelConfig.from_dict(payload['config'])
        info = ModelInfo(**payload['info'])
    except (KeyError, TypeError, ValueError) as e:
        raise NotACheckpointError(f'{path} has an invalid config or info: {e}') from e
    if len(info.class_names) != cfg.num_classes:
        raise CheckpointMismatchError(
            f'{path}: config has {cfg.num_classes} classes but {len(info.class_names)} names')
    if num_classes is not None and num_classes != cfg.num_classes:
        raise CheckpointMismatchError(
            f'{path} predicts {cfg.num_classes} classes, expected {num_classes}')
    model = build_model(cfg)
    problem = state_mismatch(model, payload['state_dict'])
    if problem:
        raise CheckpointMismatchError(
            f'{path}: weights do not match the architecture in its config: {problem}')
    model.load_state_dict(payload['state_dict'])
    return model.eval(), info, payload.get('extra', {})
