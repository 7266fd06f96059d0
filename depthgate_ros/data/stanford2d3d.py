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
Stanford-2D-3D-Semantics equirectangular panoramas, prepared as in paper section 6.1.

    root/assets/semantic_labels.json               the dataset's list of "class_instance_room"
                                                   (also accepted at root/semantic_labels.json)
    root/area_<N>/pano/rgb/<name>_rgb.png          8-bit colour, 2048 x 4096
    root/area_<N>/pano/depth/<name>_depth.png      16 bit, 1/512 m per unit, 65535 = missing
    root/area_<N>/pano/semantic/<name>_semantic.png  RGB = R*65536 + G*256 + B, an index
                                                   into semantic_labels.json

The paper rescales by 0.5 and keeps rows y in [160, 863] of the half-size panorama (the black
poles are cut), giving 704 x 2048 images; areas 3 and 4 are validation, the rest training.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .cityscapes import DatasetError, read_png
from .labels import IGNORE_ID, STANFORD2D3D_NAMES

SPLITS = {'train': ('area_1', 'area_2', 'area_5a', 'area_5b', 'area_6'),
          'val': ('area_3', 'area_4')}
DEPTH_UNITS_PER_M = 512.0
DEPTH_MISSING = 65535
ROWS = (160, 864)       # [160, 863] inclusive, after the 0.5 rescale


def decode_semantic(rgb: np.ndarray, index_to_class: np.ndarray) -> np.ndarray:
    """RGB-encoded label index -> class id (255 where unknown or out of range)."""
    idx = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) \
        | rgb[..., 2].astype(np.int64)
    ok = idx < len(index_to_class)
    return np.where(ok, index_to_class[np.where(ok, idx, 0)], IGNORE_ID).astype(np.uint8)


def class_table(labels: list[str]) -> np.ndarray:
    """semantic_labels.json entries ("chair_12_office_3") -> class id per entry."""
    lookup = {name: i for i, name in enumerate(STANFORD2D3D_NAMES)}
    return np.array([lookup.get(entry.split('_')[0], IGNORE_ID) for entry in labels], np.uint8)


class Stanford2D3DDataset:
    class_names = STANFORD2D3D_NAMES

    def __init__(self, root: str | Path, split: str = 'train', scale: float = 0.5,
                 rows: tuple[int, int] | None = ROWS):
        self.root, self.scale, self.rows = Path(root), scale, rows
        if split not in SPLITS:
            raise ValueError(f'split {split!r} is not one of {sorted(SPLITS)}')
        table = self.root / 'assets' / 'semantic_labels.json'
        if not table.is_file() and (self.root / 'semantic_labels.json').is_file():
            table = self.root / 'semantic_labels.json'
        if not table.is_file():
            raise DatasetError(f"{table} is missing (the dataset's semantic_labels.json)")
        try:
            self.index_to_class = class_table(json.loads(table.read_text()))
        except (ValueError, AttributeError) as e:
            raise DatasetError(f'malformed {table}: {e}') from e
        areas = [self.root / a for a in SPLITS[split] if (self.root / a).is_dir()]
        if not areas:
            raise DatasetError(f'none of the {split} areas {SPLITS[split]} exist under '
                               f'{self.root}')
        self.items = sorted(p for a in areas for p in (a / 'pano' / 'rgb').glob('*_rgb.png'))
        if not self.items:
            raise DatasetError(f'no panoramas (*_rgb.png) under {[str(a) for a in areas]}')
        for rgb in self.items:
            for path in self._paths(rgb).values():
                if not path.is_file():
                    raise DatasetError(f'Stanford-2D-3D tree incomplete: {path} is missing')

    @staticmethod
    def _paths(rgb: Path) -> dict[str, Path]:
        pano, stem = rgb.parent.parent, rgb.name[: -len('_rgb.png')]
        return {'rgb': rgb, 'depth': pano / 'depth' / f'{stem}_depth.png',
                'semantic': pano / 'semantic' / f'{stem}_semantic.png'}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict:
        paths = self._paths(self.items[k])
        rgb = read_png(paths['rgb'], cv2.IMREAD_COLOR)[..., ::-1]
        raw_depth = read_png(paths['depth'])
        if raw_depth.dtype != np.uint16 or raw_depth.ndim != 2:
            raise DatasetError(f"{paths['depth']} must be a 16-bit single-channel PNG")
        semantic = read_png(paths['semantic'], cv2.IMREAD_COLOR)[..., ::-1]
        depth = np.where((raw_depth > 0) & (raw_depth != DEPTH_MISSING),
                         raw_depth / DEPTH_UNITS_PER_M, np.nan).astype(np.float32)
        labels = decode_semantic(semantic, self.index_to_class)
        if self.scale != 1.0:
            h, w = rgb.shape[:2]
            size = (round(w * self.scale), round(h * self.scale))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        if self.rows is not None:
            r0, r1 = self.rows
            if rgb.shape[0] < r1:
                raise DatasetError(f"{paths['rgb']} is {rgb.shape[0]} rows after scaling, "
                                   f'too small for the crop rows {r0}..{r1 - 1}')
            rgb, depth, labels = rgb[r0:r1], depth[r0:r1], labels[r0:r1]
        return {'name': paths['rgb'].name[: -len('_rgb.png')],
                'rgb': np.ascontiguousarray(rgb), 'labels': labels, 'depth': depth}
