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
NYU-Depth-v2 (40 classes) and SUN-RGBD (37 classes) in their common extracted layout.

    root/train.txt, root/test.txt       image ids, one per line
    root/rgb/<id>.png (or .jpg)         8-bit colour
    root/depth/<id>.png                 16-bit depth, see `depth_format`
    root/label40/<id>.png (NYUv2)       8-bit, 0 = unlabelled, 1..40 the NYU-40 classes
    root/label37/<id>.png (SUN-RGBD)    8-bit, 0 = unlabelled, 1..37 the SUN-RGBD classes

`depth_format`: "mm" = millimetres with 0 invalid (NYUv2 PNG exports); "sunrgbd" = the SUN-RGBD
toolbox encoding, millimetres rotated left by 3 bits inside the 16-bit word. Labels shift down
by one (class k -> train id k-1) and 0 becomes 255 (ignore).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .cityscapes import DatasetError, read_png
from .labels import IGNORE_ID, NYU40_NAMES, SUNRGBD37_NAMES

DEPTH_FORMATS = ('mm', 'sunrgbd')


def decode_depth_png(raw: np.ndarray, depth_format: str) -> np.ndarray:
    """16-bit depth PNG -> metres (float32, NaN invalid)."""
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DatasetError(f'depth must be a single-channel 16-bit PNG, got {raw.dtype} '
                           f'{raw.shape}')
    if depth_format == 'sunrgbd':
        raw = (raw >> 3) | (raw << 13)
    elif depth_format != 'mm':
        raise ValueError(f'depth_format {depth_format!r} is not one of {DEPTH_FORMATS}')
    mm = raw.astype(np.float32)
    return np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32)


def encode_depth_png(depth_m: np.ndarray, depth_format: str = 'mm') -> np.ndarray:
    """Inverse of `decode_depth_png` (to the millimetre)."""
    mm = np.round(np.nan_to_num(depth_m, nan=0.0) * 1000.0)
    raw = np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)
    if depth_format == 'sunrgbd':  # the inverse rotation: left by 3 bits
        raw = (raw << 3) | (raw >> 13)
    return raw


class IndoorDataset:
    """
    NYUv2 or SUN-RGBD frames as samples: dicts of numpy arrays.

    rgb (H, W, 3) uint8, labels (H, W) uint8 train ids (255 ignore), depth (H, W) float32 metres
    (NaN invalid), name.
    """

    def __init__(self, root: str | Path, split: str, class_names: tuple[str, ...],
                 label_dir: str, depth_format: str = 'mm'):
        self.root, self.split = Path(root), split
        self.class_names, self.label_dir = class_names, label_dir
        if depth_format not in DEPTH_FORMATS:
            raise ValueError(f'depth_format {depth_format!r} is not one of {DEPTH_FORMATS}')
        self.depth_format = depth_format
        listing = self.root / f'{split}.txt'
        if not listing.is_file():
            raise DatasetError(f'split file {listing} is missing (one image id per line)')
        self.ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise DatasetError(f'split file {listing} lists no images')
        for i in self.ids:
            for path in self._paths(i).values():
                if not path.is_file():
                    raise DatasetError(f'{type(self).__name__} tree incomplete: {path} is '
                                       'missing')

    def _paths(self, i: str) -> dict[str, Path]:
        rgb = self.root / 'rgb' / f'{i}.png'
        if not rgb.is_file() and (self.root / 'rgb' / f'{i}.jpg').is_file():
            rgb = self.root / 'rgb' / f'{i}.jpg'
        return {'rgb': rgb, 'depth': self.root / 'depth' / f'{i}.png',
                'labels': self.root / self.label_dir / f'{i}.png'}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> dict:
        i = self.ids[k]
        paths = self._paths(i)
        rgb = read_png(paths['rgb'], cv2.IMREAD_COLOR)[..., ::-1].copy()
        raw = read_png(paths['labels'])
        if raw.ndim != 2 or raw.dtype != np.uint8:
            raise DatasetError(f"{paths['labels']} must be an 8-bit single-channel label "
                               f'image, got {raw.dtype} {raw.shape}')
        if raw.max() > len(self.class_names):
            raise DatasetError(f"{paths['labels']} holds label {raw.max()}, more than the "
                               f'{len(self.class_names)} classes of this dataset')
        labels = np.where(raw == 0, IGNORE_ID, raw - 1).astype(np.uint8)
        try:
            depth = decode_depth_png(read_png(paths['depth']), self.depth_format)
        except DatasetError as e:
            raise DatasetError(f"{paths['depth']}: {e}") from None
        sample = {'name': i, 'rgb': rgb, 'labels': labels, 'depth': depth}
        shapes = {k: v.shape[:2] for k, v in sample.items() if isinstance(v, np.ndarray)}
        if len(set(shapes.values())) != 1:
            raise DatasetError(f'{i}: image sizes differ between files: {shapes}')
        return sample


class NYUv2Dataset(IndoorDataset):
    def __init__(self, root, split: str = 'train', depth_format: str = 'mm'):
        super().__init__(root, split, NYU40_NAMES, 'label40', depth_format)


class SUNRGBDDataset(IndoorDataset):
    def __init__(self, root, split: str = 'train', depth_format: str = 'sunrgbd'):
        super().__init__(root, split, SUNRGBD37_NAMES, 'label37', depth_format)
