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
Training-run configuration.

One YAML file per run (see config/train_*.yaml), with command-line overrides `section.key=value`.
Every key is documented here, where it is defined; an unknown key stops the run with a message
naming it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.sensors import sensor_from_config
from ..model.config import CALL_GATES, ModelConfig, PRESETS
from ..model.losses import LossWeights

DATASETS = ('synthetic', 'cityscapes', 'camvid', 'folder', 'nyuv2', 'sunrgbd', 'stanford2d3d')
ALSO_KEYS = ('dataset', 'root', 'train_split')    # data.also entries
CAMERA_KEYS = ('fx_scale', 'height_m', 'pitch_deg')   # data.synthetic_camera


class ConfigError(ValueError):
    """A training config key or value is wrong; the message names it."""


@dataclass
class DataConfig:
    # One of DATASETS. camvid: either CamVid release (data/labelled.py); folder: a labelled
    # folder with a classes.yaml (docs/data.md). Both train the 19 Cityscapes classes through
    # the model classes each of their classes covers.
    dataset: str = 'synthetic'
    root: str | None = None             # dataset root (unused by synthetic)
    # Further datasets trained on beside `dataset`, each {dataset, root, train_split}: their
    # train frames join the training set (so their share is their share of frames), while
    # validation stays on `dataset`. Synthetic streets bring the depth real frames lack.
    also: list = field(default_factory=list)
    train_split: str = 'train'
    val_split: str = 'val'
    synthetic_train_frames: int = 2000  # synthetic: seeds 0..N-1 train
    synthetic_val_frames: int = 50      # synthetic: seeds 1e6.. validation (never trained on)
    image_size: list[int] = field(default_factory=lambda: [128, 256])  # synthetic render (H, W)
    # synthetic: another camera than the training one, e.g. {fx_scale: 0.6} (wider field of
    # view), {height_m: 2.2, pitch_deg: 8} (tall mount) or {height_m: 0.5} (low robot)
    synthetic_camera: dict = field(default_factory=dict)
    crop: list[int] = field(default_factory=lambda: [128, 256])  # training crop, multiples of 8
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    max_rotation_deg: float = 10.0
    flip_p: float = 0.5
    color_jitter: float = 0.3
    num_workers: int = 1
    val_frames: int | None = None       # cap on validation images (None = all)
    # The depth sensors whose measurements the sensor and hybrid gates train on: names or
    # dicts ({preset: car_stereo, disparity_noise_px: 0.5}) of data/sensors.py; each sample
    # draws one, its noise and hole parameters scaled by a log-uniform factor within
    # [1/sensor_jitter, sensor_jitter]. Empty: the dataset's own depth, as it is.
    sensors: list = field(default_factory=list)
    sensor_jitter: float = 2.0
    # none, or enet: each training target's cross-entropy weighted 1 / ln(1.02 + its share of
    # the training pixels) (ENet's class balancing, as ESPNet trains CamVid), so that rare
    # classes (pole, sign, bicyclist) are not outvoted by road and sky
    class_weights: str = 'none'


@dataclass
class DistillConfig:
    # A published ESPNetv2 segmentation file (the 19 Cityscapes classes and background) whose
    # probabilities on data.dataset's training frames are the soft targets of a stage's
    # `distill` loss (training/teacher.py). None: no teacher.
    teacher: str | None = None
    input_size: list[int] = field(default_factory=lambda: [512, 1024])  # the teacher's (H, W)
    flip: bool = False                  # average in the mirrored frame's probabilities
    cache_dir: str | None = None        # where its targets are kept; None: <output_dir>/teacher


@dataclass
class OptimConfig:
    lr: float = 2.5e-4                  # base learning rate of the poly schedule (paper)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    batch_size: int = 1                 # per process; the paper trains with 1
    amp: str = 'none'                   # none | fp16 | bf16 (autocast, CUDA only)
    freeze_bn: str = 'backbone'         # backbone (paper) | all | none: BN layers kept in eval
    max_nonfinite: int = 20             # consecutive non-finite losses before the run stops


@dataclass
class StageConfig:
    name: str = 'stage'
    iterations: int = 1000
    # ModelConfig overrides for this stage (gate_source, recurrent, loops, tied, ...).
    model: dict = field(default_factory=dict)
    # Eq. 1 weights: scalars or per-loop lists counted from the last loop backwards.
    loss: dict = field(default_factory=lambda: {'seg': 1.0, 'depth_reg': 0.0,
                                                'depth_cls': 0.0})
    lr: float | None = None             # overrides optim.lr for this stage
    # Gate source per batch, drawn with these probabilities (e.g. {sensor: 0.4, hybrid: 0.3,
    # predicted: 0.3}) so one model serves frames with and without depth. None: the stage's
    # model.gate_source on every batch.
    gate_mix: dict | None = None


@dataclass
class TrainConfig:
    output_dir: str = 'runs/default'
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    # ModelConfig keys, or `preset: NAME` (model/config.py PRESETS) and keys on top of it;
    # depth_edges null = quantiles
    model: dict = field(default_factory=dict)
    # The backbone's starting weights: a local state dict (torchvision's ImageNet layout, or
    # a published ESPNetv2 file), or `imagenet`: torchvision's own, from torch.hub's cache,
    # downloaded into it if absent (ResNets and MobileNetV3 only).
    backbone_weights: str | None = None
    # Checkpoint (or bundled model) the first stage starts from. With backbone_weights too,
    # the backbone comes from backbone_weights and init_from gives the rest: a trained head
    # on another backbone (a wider encoder) keeps every tensor whose shape still fits.
    init_from: str | None = None
    # How a gating module new in a stage starts: "scratch" (random, as the bundled model was
    # trained) or "context": every branch from the previous stage's plain 3x3 context conv
    # and its BN, the 1x1 fuse as identity, so gating starts where the baseline stopped.
    gating_init: str = 'scratch'
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    checkpoint_every: int = 200
    val_every: int = 500
    log_every: int = 10
    device: str = 'auto'

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {'data': DataConfig, 'optim': OptimConfig, 'distill': DistillConfig}


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f'{where} must be a mapping, got {type(values).__name__}')
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key {where + '.' if where else ''}{unknown[0]} "
                          f"(known: {', '.join(sorted(known))})")
    return cls(**values)


def from_dict(raw: dict) -> TrainConfig:
    raw = dict(raw or {})
    kwargs: dict[str, Any] = {}
    for key, cls in _SECTIONS.items():
        if key in raw:
            kwargs[key] = _build(cls, raw.pop(key), key)
    if 'stages' in raw:
        stages = raw.pop('stages')
        if not isinstance(stages, list) or not stages:
            raise ConfigError('stages must be a non-empty list')
        kwargs['stages'] = [_build(StageConfig, s, f'stages[{i}]') for i, s in enumerate(stages)]
    cfg = _build(TrainConfig, {**raw, **kwargs}, '')
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    if cfg.gating_init not in ('scratch', 'context'):
        raise ConfigError(f'gating_init {cfg.gating_init!r} is not one of scratch, context')
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f'data.dataset {cfg.data.dataset!r} is not one of {DATASETS}')
    bad = sorted(set(cfg.data.synthetic_camera) - set(CAMERA_KEYS))
    if bad:
        raise ConfigError(f'unknown config key data.synthetic_camera.{bad[0]} '
                          f"(known: {', '.join(CAMERA_KEYS)})")
    if cfg.data.dataset != 'synthetic' and not cfg.data.root:
        raise ConfigError(f'data.root is required for dataset {cfg.data.dataset!r}')
    for i, extra in enumerate(cfg.data.also):
        bad = sorted(set(extra) - set(ALSO_KEYS)) if isinstance(extra, dict) else ['?']
        if bad or extra.get('dataset') not in DATASETS or extra['dataset'] == 'synthetic' \
                or not extra.get('root'):
            raise ConfigError(f'data.also[{i}] must be {{dataset, root, train_split}} with a '
                              f'dataset on disk (one of {DATASETS[1:]}), got {extra}')
    if len(cfg.data.crop) != 2 or any(c <= 0 or c % 8 for c in cfg.data.crop):
        raise ConfigError(f'data.crop must be two positive multiples of 8, got {cfg.data.crop}')
    if cfg.data.class_weights not in ('none', 'enet'):
        raise ConfigError(f'data.class_weights {cfg.data.class_weights!r} is not one of none, '
                          'enet')
    if cfg.optim.amp not in ('none', 'fp16', 'bf16'):
        raise ConfigError(f'optim.amp {cfg.optim.amp!r} is not one of none, fp16, bf16')
    if cfg.optim.freeze_bn not in ('backbone', 'all', 'none'):
        raise ConfigError(f'optim.freeze_bn {cfg.optim.freeze_bn!r} is not one of backbone, '
                          'all, none')
    names = [s.name for s in cfg.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f'stage names must be unique, got {names}')
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    if cfg.model.get('preset') is not None and cfg.model['preset'] not in PRESETS:
        raise ConfigError(f"model.preset {cfg.model['preset']!r} is not one of "
                          f"{', '.join(sorted(PRESETS))}")
    for where, overrides in [('model', cfg.model)] + [
            (f'stages[{s.name}].model', s.model) for s in cfg.stages]:
        bad = sorted(set(overrides) - model_keys - ({'preset'} if where == 'model' else set()))
        if bad:
            raise ConfigError(f'unknown config key {where}.{bad[0]} (ModelConfig keys: '
                              f"{', '.join(sorted(model_keys))})")
    loss_keys = [f.name for f in dataclasses.fields(LossWeights)]
    for s in cfg.stages:
        bad = sorted(set(s.loss) - set(loss_keys))
        if bad:
            raise ConfigError(f'unknown config key stages[{s.name}].loss.{bad[0]} '
                              f"({', '.join(loss_keys)})")
        if LossWeights(**s.loss).uses('distill') and not cfg.distill.teacher:
            raise ConfigError(f'stages[{s.name}].loss.distill needs a teacher: set '
                              'distill.teacher to a published ESPNetv2 segmentation file')
        if s.iterations < 1:
            raise ConfigError(f'stages[{s.name}].iterations must be >= 1')
        if s.gate_mix is not None:
            bad = sorted(set(s.gate_mix) - set(CALL_GATES))
            if bad or not s.gate_mix or any(p < 0 for p in s.gate_mix.values()) \
                    or sum(s.gate_mix.values()) <= 0:
                raise ConfigError(f'stages[{s.name}].gate_mix must map some of '
                                  f"{', '.join(CALL_GATES)} to non-negative probabilities, "
                                  f'got {s.gate_mix}')
            gate_source = s.model.get('gate_source',
                                      cfg.model.get('gate_source', ModelConfig.gate_source))
            if gate_source in ('none', 'attention'):
                raise ConfigError(f'stages[{s.name}].gate_mix needs a depth-gated model '
                                  '(model.gate_source predicted, sensor or hybrid)')
    size = cfg.distill.input_size
    if len(size) != 2 or any(not isinstance(v, int) or v <= 0 or v % 32 for v in size):
        raise ConfigError(f'distill.input_size must be two positive multiples of 32 (the '
                          f'published networks halve their input five times), got {size}')
    if cfg.data.sensor_jitter < 1:
        raise ConfigError(f'data.sensor_jitter must be >= 1, got {cfg.data.sensor_jitter}')
    for spec in cfg.data.sensors:
        try:
            sensor_from_config(spec)
        except ValueError as e:
            raise ConfigError(f'data.sensors: {e}') from e


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """
    `a.b=value` (value parsed as YAML) into the raw config dict; stages by name.

    `stages.baseline.iterations=100`.
    """
    raw = yaml.safe_load(yaml.safe_dump(raw))  # deep copy
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'override {item!r} is not of the form key=value')
        key, value = item.split('=', 1)
        parts = key.split('.')
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):  # a stage, addressed by its name
                match = [s for s in node if s.get('name') == part]
                if not match:
                    raise ConfigError(f'override {key}: no stage named {part!r}')
                node = match[0]
            else:
                node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'config file not found: {path}')
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f'{path} is not valid YAML: {e}') from e
    return from_dict(apply_overrides(raw, list(overrides)))


@dataclass
class HeadAblationConfig:
    """depthgate-head-ablation: heads compared on one frozen network's cached features."""

    checkpoint: str = 'runs/ablation_backbone/model.pt'   # the frozen backbone and stem
    cache_dir: str = 'runs/ablation_cache'
    output_dir: str = 'runs/ablation_heads'
    # Frames on disk instead of rendered ones (DataConfig keys: dataset, root, also,
    # train_split, val_split): training frames as depthgate-train takes them, rows scored on
    # val_split in that dataset's classes (a DataConfig once loaded). Empty: synthetic frames,
    # as below.
    data: Any = field(default_factory=dict)
    # labels and depth cached at this fraction of the frame's size (feature_cache.py)
    label_scale: float = 1.0
    size: list = field(default_factory=lambda: [256, 512])
    train_frames: int = 1200
    eval_frames: int = 200
    sensor: Any = 'car_stereo'        # the depth the sensor and hybrid rows gate on
    iterations: int = 300
    batch_size: int = 8
    lr: float = 0.01
    head: dict = field(default_factory=dict)         # ModelConfig keys shared by every row
    distance_edges_m: list = field(default_factory=lambda: [10.0, 25.0])
    forced_branches: list = field(default_factory=list)   # rows whose branches are probed
    rows: list = field(default_factory=list)


def load_head_ablation(path: str | Path, overrides: list[str] = ()) -> HeadAblationConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f'cannot read {path}: {e}') from e
    except yaml.YAMLError as e:
        raise ConfigError(f'{path} is not valid YAML: {e}') from e
    cfg = _build(HeadAblationConfig, apply_overrides(raw, list(overrides)), '')
    if cfg.data:
        cfg.data = _build(DataConfig, cfg.data, 'data')
        validate(TrainConfig(data=cfg.data))
    names = [r.get('name') for r in cfg.rows]
    if not names or None in names or len(set(names)) != len(names):
        raise ConfigError('rows: give each row a unique name')
    if 'baseline' not in names:
        raise ConfigError('rows: the differences are to a row named baseline')
    try:
        sensor_from_config(cfg.sensor)
    except ValueError as e:
        raise ConfigError(f'sensor: {e}') from e
    return cfg
