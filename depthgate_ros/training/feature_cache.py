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
A frozen network's features F of synthetic or real frames, cached as float16 on disk.

F is what every loop head reads (the output of backbone and stem, network.py), so heads can be
trained and compared on it without running the backbone again: the cheap half of an ablation
whose rows differ only in the head (docs/results.md). Each split is a directory of .npy
arrays, filled in chunks with a progress file, so an interrupted caching run continues.

    features  (N, C, h, w) float16     F, h x w = image / the network's stride (8 or 16)
    labels    (N, H, W) uint8          training targets (train ids, or a coarser dataset's
                                       targets after them, training/datasets.py), 255 ignored
    depth     (N, H, W) float16        exact depth in metres (at most 60 km), NaN where there
                                       is none (sky, and every pixel of a real frame)
    sensor    (N, H, W) float16        what the configured depth sensor measures, NaN = hole
"""
from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from .datasets import SyntheticStreetDataset
from ..data.sensors import measure, sample_focal, Sensor
from ..inference import image_input
from ..model import DepthGatedNet
from ..model.checkpoint import ModelInfo

ARRAYS = ('features', 'labels', 'depth', 'sensor')


@dataclass
class CachedSplit:
    """One cached split, memory-mapped read-only."""

    features: np.ndarray
    labels: np.ndarray
    depth: np.ndarray
    sensor: np.ndarray

    @classmethod
    def load(cls, directory: Path) -> 'CachedSplit':
        progress = _read_progress(directory)
        if progress is None or progress['done'] < progress['frames']:
            raise FileNotFoundError(f'{directory}: no complete feature cache (run the cache '
                                    'step to the end first)')
        return cls(*(np.load(directory / f'{name}.npy', mmap_mode='r') for name in ARRAYS))

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index, device='cpu') -> dict[str, torch.Tensor]:
        """Rows `index` as float32 / int64 tensors (NaN kept)."""
        index = np.sort(np.asarray(index))
        as_t = lambda a, dtype: torch.from_numpy(np.asarray(a[index])).to(device, dtype)  # noqa
        return {'features': as_t(self.features, torch.float32),
                'labels': as_t(self.labels, torch.int64),
                'depth': as_t(self.depth, torch.float32),
                'sensor': as_t(self.sensor, torch.float32).unsqueeze(1)}


def _read_progress(directory: Path) -> dict | None:
    path = directory / 'progress.json'
    return json.loads(path.read_text()) if path.is_file() else None


def cache_split(model: DepthGatedNet, info: ModelInfo, directory: Path, *, frames: int,
                first_seed: int, size: tuple[int, int], sensor: Sensor | None,
                chunk: int = 25, log=print) -> None:
    """Render `frames` synthetic frames from `first_seed` and cache them (`cache_frames`)."""
    cache_frames(model, info, directory, SyntheticStreetDataset(frames, first_seed, size),
                 {'frames': frames, 'size': list(size), 'first_seed': first_seed},
                 sensor=sensor, chunk=chunk, log=log)


def cache_frames(model: DepthGatedNet, info: ModelInfo, directory: Path, data,
                 identity: dict, *, sensor: Sensor | None, label_scale: float = 1.0,
                 chunk: int = 25, log=print) -> None:
    """
    Run backbone and stem on every frame of `data` (samples of one size), store F and truth.

    `label_scale` < 1 stores labels, depth and sensor depth at that fraction of the frame's
    size (nearest neighbour: no value is invented), so the heads' losses and scores, which
    work at the labels' size, cost that fraction squared.
    Resumes where a previous call stopped; a finished split is left as it is, and a directory
    that caches other frames (another `identity`) is refused. Frames without depth (real
    images) get NaN depth and NaN sensor. The sensor's noise is seeded per frame, so a split
    is the same whoever caches it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    frames = len(data)
    identity = {**identity, 'frames': frames}
    if label_scale != 1.0:
        identity['label_scale'] = label_scale
    first = data[0]
    full = first['labels'].shape
    h, w = (max(1, round(full[0] * label_scale)), max(1, round(full[1] * label_scale)))
    small = (lambda a: a) if (h, w) == full else (  # noqa: E731
        lambda a: cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST))
    mean, std = (torch.tensor(v) for v in (info.mean, info.std))
    model.eval()
    with torch.inference_mode():
        feat_shape = tuple(model.features(image_input(first['rgb'], mean, std))[1].shape[1:])
    shapes = {'features': ((frames, *feat_shape), np.float16),
              'labels': ((frames, h, w), np.uint8), 'depth': ((frames, h, w), np.float16),
              'sensor': ((frames, h, w), np.float16)}
    progress = _read_progress(directory)
    if progress is not None and {k: progress.get(k) for k in identity} != identity:
        raise ValueError(f'{directory} caches other frames ({progress}); choose another '
                         'cache_dir')
    done = 0 if progress is None else progress['done']
    arrays = {name: np.lib.format.open_memmap(
        directory / f'{name}.npy', mode='w+' if done == 0 else 'r+', dtype=dtype, shape=shape)
        for name, (shape, dtype) in shapes.items()}
    while done < frames:
        stop = min(frames, done + chunk)
        for i in range(done, stop):
            s = data[i]
            if s['labels'].shape != full:
                raise ValueError(f"{s.get('name', i)}: {s['labels'].shape[::-1]} frame; a cache "
                                 f'holds frames of one size ({full[1]}x{full[0]})')
            with torch.inference_mode():
                feat = model.features(image_input(s['rgb'], mean, std))[1]
            arrays['features'][i] = feat[0].numpy().astype(np.float16)
            arrays['labels'][i] = small(s['labels'])
            depth = s.get('depth')
            if depth is None:
                arrays['depth'][i] = arrays['sensor'][i] = np.nan
                continue
            # float16 ends at 65504: farther (ray-cast ground near the horizon) stays far
            arrays['depth'][i] = small(np.minimum(depth, 6e4).astype(np.float32))
            arrays['sensor'][i] = small(measure(
                sensor, depth, sample_focal(s),
                np.random.default_rng((23, identity.get('first_seed', 0) + i)),
                s['rgb']).astype(np.float32))
        for a in arrays.values():
            a.flush()
        done = stop
        # the progress file moves only after the chunk is on disk
        (directory / 'progress.json').write_text(json.dumps({**identity, 'done': done}))
        log(f'{directory.name}: {done}/{frames} frames cached')
