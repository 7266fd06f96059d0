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
Datasets for training and validation, and deterministic sampling.

The sampling makes an interrupted run resume to the same weights.

Randomness of a training sample depends only on (run seed, epoch, sample index): the sampler
draws each epoch's permutation from (seed, epoch), and each sample's augmentation runs under
a generator seeded from (seed, epoch, index). So the same iteration sees the same batch
whether the run was resumed, how many loader workers there are, and how many DDP ranks.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .config import DataConfig
from ..data.cityscapes import CityscapesDataset
from ..data.indoor import NYUv2Dataset, SUNRGBDDataset
from ..data.labelled import camvid, LabelledFolder
from ..data.labels import (bit_palette, CITYSCAPES_COLORS, CITYSCAPES_NAMES, cover_matrix,
                           IGNORE_ID, NYU40_NAMES, STANFORD2D3D_NAMES, SUNRGBD37_NAMES)
from ..data.sensors import jittered, measure, sample_focal, sensor_from_config
from ..data.stanford2d3d import Stanford2D3DDataset
from ..data.synthetic import Camera, render_frame
from ..data.transforms import PairedAugment

SYNTHETIC_VAL_FIRST_SEED = 1_000_000


class SyntheticStreetDataset:
    """Frames rendered on the fly: sample i is `render_frame(first_seed + i)`."""

    class_names = CITYSCAPES_NAMES

    def __init__(self, length: int, first_seed: int = 0, size=(256, 512),
                 camera: dict | None = None):
        h, w = size
        changes = dict(camera or {})
        f = 560.0 * w / 512 * changes.pop('fx_scale', 1.0)
        self.length, self.first_seed = length, first_seed
        self.camera = Camera(width=w, height=h, fx=f, fy=f, **changes)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.length:
            raise IndexError(i)
        fr = render_frame(self.first_seed + i, self.camera)
        return {'name': f'synthetic_{self.first_seed + i:07d}', 'rgb': fr.rgb,
                'labels': fr.labels, 'depth': fr.depth, 'instances': fr.instances,
                'focal_px': self.camera.fx}


def build_dataset(cfg: DataConfig, split: str):
    """Return the raw dataset (numpy samples) for a split."""
    return _on_disk(cfg.dataset, cfg.root, split) if cfg.dataset != 'synthetic' else \
        _synthetic(cfg, split)


def _synthetic(cfg: DataConfig, split: str):
    if split == cfg.train_split:
        return SyntheticStreetDataset(cfg.synthetic_train_frames, 0, cfg.image_size,
                                      cfg.synthetic_camera)
    return SyntheticStreetDataset(cfg.synthetic_val_frames, SYNTHETIC_VAL_FIRST_SEED,
                                  cfg.image_size, cfg.synthetic_camera)


def _on_disk(dataset: str, root, split: str):
    return {'cityscapes': CityscapesDataset, 'camvid': camvid,
            'folder': LabelledFolder.from_root, 'nyuv2': NYUv2Dataset,
            'sunrgbd': SUNRGBDDataset, 'stanford2d3d': Stanford2D3DDataset}[dataset](root, split)


class TrainingSet:
    """
    The training frames of `data.dataset` and `data.also`, labelled in one target space.

    Targets 0..C-1 are the model's classes; a dataset with classes of its own (its `covers`)
    gets targets after them, one per class, and `cover` (targets x classes) says which model
    classes each target covers: the loss trains their summed probability.
    """

    def __init__(self, cfg: DataConfig, model_names: tuple[str, ...]):
        parts = [build_dataset(cfg, cfg.train_split)] + [
            _on_disk(a['dataset'], a['root'], a.get('train_split', 'train')) for a in cfg.also]
        rows = [tuple(i == j for j in range(len(model_names))) for i in range(len(model_names))]
        # per part: its label value -> target (None: its labels are the model's classes)
        self.parts, self.to_target, self.starts = [], [], []
        for raw in parts:
            covers = getattr(raw, 'covers', None)
            lut = None
            if covers is not None:
                lut = np.full(256, IGNORE_ID, np.uint8)
                lut[:len(covers)] = len(rows) + np.arange(len(covers))
                rows += cover_matrix(covers, model_names)
            self.to_target.append(lut)
            self.starts.append(sum(len(p) for p in self.parts))
            self.parts.append(raw)
        if len(rows) > IGNORE_ID:
            raise ValueError(f'{len(rows)} training targets; at most {IGNORE_ID}')
        # None when every frame is labelled in the model's classes: plain cross-entropy
        self.cover = None if len(rows) == len(model_names) else \
            torch.tensor(rows, dtype=torch.float32)
        self.camera = getattr(self.parts[0], 'camera', None) if len(parts) == 1 else None
        self.teacher = None
        self.class_weights = enet_weights(self.target_pixels(len(rows))) \
            if cfg.class_weights == 'enet' else None

    def target_pixels(self, targets: int) -> np.ndarray:
        """Count the labelled pixels of each training target over every frame (one pass)."""
        counts = np.zeros(targets, np.int64)
        for i in range(len(self)):
            labels = self[i]['labels']
            counts += np.bincount(labels[labels < targets].ravel(), minlength=targets)
        return counts

    def teach(self, targets) -> None:
        """Give the first dataset's frames a teacher's soft targets (training/teacher.py)."""
        self.teacher = targets

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.starts, i, side='right')) - 1
        sample = self.parts[k][i - self.starts[k]]
        lut = self.to_target[k]
        if lut is not None:
            sample = {**sample, 'labels': lut[sample['labels']]}
        if k == 0 and self.teacher is not None:
            sample = {**sample, 'teacher': self.teacher(sample['name'], sample['labels'].shape)}
        return sample


def enet_weights(pixels: np.ndarray, c: float = 1.02) -> torch.Tensor:
    """Return ENet's class balancing weights (Paszke et al. 2016): 1 / ln(c + pixel share)."""
    share = pixels / max(1, pixels.sum())
    return torch.tensor(1.0 / np.log(c + share), dtype=torch.float32)


def class_table(dataset_name: str) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Class names and display colours of the model trained on a dataset."""
    if dataset_name in ('synthetic', 'cityscapes', 'camvid', 'folder'):
        return CITYSCAPES_NAMES, CITYSCAPES_COLORS
    names = {'nyuv2': NYU40_NAMES, 'sunrgbd': SUNRGBD37_NAMES,
             'stanford2d3d': STANFORD2D3D_NAMES}[dataset_name]
    return names, bit_palette(len(names))


class AugmentedDataset(Dataset):
    """Raw samples -> augmented tensors (rgb uint8, labels int64, depth float NaN-invalid)."""

    def __init__(self, raw, cfg: DataConfig, seed: int, sensor_depth: bool = False,
                 teacher: bool = False):
        self.raw, self.seed = raw, seed
        self.augment = PairedAugment(cfg.crop, cfg.scale_range, cfg.max_rotation_deg,
                                     cfg.flip_p, cfg.color_jitter)
        self.epoch = 0
        # `sensor_depth`: also return what a depth sensor measures of the scene, for the gate
        self.sensor_depth = sensor_depth
        # `teacher`: also return soft targets (C, h, w), all zero for frames without any
        self.teacher = teacher
        self.sensors = [sensor_from_config(s) for s in cfg.sensors]
        self.jitter = cfg.sensor_jitter

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key) -> dict:
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.raw[i]
        # fork_rng: the sample's own seed must not disturb the caller's RNG stream (the main
        # process draws dropout masks from it when num_workers is 0).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, i)) & 0x7FFF_FFFF)
            inputs = {k: sample.get(k) for k in ('rgb', 'labels', 'depth')}
            if self.teacher:
                inputs['teacher'] = sample.get('teacher')
            if self.sensor_depth:
                inputs['sensor_depth'] = self._measure(sample, epoch, i)
            out = self.augment(inputs)
        keys = ('depth', 'sensor_depth') if self.sensor_depth else ('depth',)
        for key in keys:
            if out.get(key) is None:
                out[key] = torch.full(out['labels'].shape, float('nan'))
        if self.teacher:
            keys += ('teacher',)
            if 'teacher' not in out:
                out['teacher'] = torch.zeros((len(CITYSCAPES_NAMES), *out['labels'].shape))
        return {'rgb': out['rgb'], 'labels': out['labels'], **{k: out[k] for k in keys}}

    def _measure(self, sample: dict, epoch: int, i: int):
        """Measure the sample's exact depth with a random device of the configured sensors."""
        depth = sample.get('depth')
        if depth is None or not self.sensors:
            return depth
        rng = np.random.default_rng((self.seed, epoch, i, 7))
        sensor = self.sensors[int(rng.integers(len(self.sensors)))]
        if sensor is None:                                   # 'exact' among the sensors
            return depth
        return measure(jittered(sensor, rng, self.jitter), depth, sample_focal(sample), rng,
                       sample['rgb'])


class IterationSampler(Sampler):
    """
    Yields (epoch, index) keys for iterations [start, start + count) of this rank.

    Global batch g of iteration it holds positions [it*B*W, (it+1)*B*W) of the endless
    sequence of per-epoch permutations; rank r takes its contiguous B of them. A single
    process with batch B*W therefore sees exactly the union of what W ranks see.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, count: int,
                 rank: int = 0, world_size: int = 1):
        self.n, self.b, self.seed = n, batch_size, seed
        self.start, self.count, self.rank, self.world = start, count, rank, world_size

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self.seed, epoch)).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        global_b = self.b * self.world
        cache: dict[int, np.ndarray] = {}
        for it in range(self.start, self.start + self.count):
            first = it * global_b + self.rank * self.b
            for pos in range(first, first + self.b):
                epoch, k = divmod(pos, self.n)
                if epoch not in cache:
                    cache = {epoch: self._permutation(epoch)}
                yield epoch, int(cache[epoch][k])

    def __len__(self) -> int:
        return self.count * self.b
