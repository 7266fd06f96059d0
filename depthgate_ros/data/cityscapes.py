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
Cityscapes: the on-disk format, read and written.

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png        (label ids, 0..33)
    root/gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png   (optional: train ids)
    root/gtFine/<split>/<city>/<stem>_gtFine_instanceIds.png     (labelId*1000+k for things)
    root/disparity/<split>/<city>/<stem>_disparity.png           (16 bit: d = (p-1)/256, 0 bad)
    root/camera/<split>/<city>/<stem>_camera.json                (baseline, fx, fy, u0, v0)

Depth = baseline * fx / disparity. The synthetic generator exports the same tree, so one
loader serves both.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .labels import CITYSCAPES_LABEL_IDS, CITYSCAPES_NAMES, IGNORE_ID

_LABEL_TO_TRAIN = np.full(256, IGNORE_ID, np.uint8)
_LABEL_TO_TRAIN[list(CITYSCAPES_LABEL_IDS)] = np.arange(len(CITYSCAPES_LABEL_IDS))
_TRAIN_TO_LABEL = np.zeros(256, np.uint8)        # ignore -> 0 "unlabeled"
_TRAIN_TO_LABEL[: len(CITYSCAPES_LABEL_IDS)] = CITYSCAPES_LABEL_IDS


class DatasetError(Exception):
    """A dataset tree is missing a file or holds a malformed one."""


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    return _LABEL_TO_TRAIN[label_ids]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    return _TRAIN_TO_LABEL[train_ids]


def encode_instances(train_ids: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Cityscapes instanceIds: labelId * 1000 + k on thing instances, labelId elsewhere."""
    label_ids = train_ids_to_label_ids(train_ids).astype(np.int32)
    out = label_ids.copy()
    has = instances > 0
    if has.any():
        _, k = np.unique(instances[has], return_inverse=True)
        out[has] = label_ids[has] * 1000 + k.ravel()
    return out


def decode_instances(instance_ids: np.ndarray) -> np.ndarray:
    """0 where there is no instance, else the (unique) Cityscapes id: values >= 1000."""
    return np.where(instance_ids >= 1000, instance_ids, 0).astype(np.int32)


def disparity_png_to_disparity(p: np.ndarray) -> np.ndarray:
    """16-bit PNG value p -> disparity (p - 1) / 256 pixels; p = 0 is invalid (NaN)."""
    p = p.astype(np.float32)
    return np.where(p > 0, (p - 1.0) / 256.0, np.nan).astype(np.float32)


def disparity_to_png(disparity: np.ndarray) -> np.ndarray:
    """Inverse of `disparity_png_to_disparity`; invalid or out-of-range values -> 0."""
    p = np.round(np.nan_to_num(disparity, nan=-1.0) * 256.0 + 1.0)
    ok = np.isfinite(disparity) & (disparity > 0) & (p <= 65535)
    return np.where(ok, p, 0).astype(np.uint16)


def read_png(path: Path, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise DatasetError(f'cannot read image {path} (missing, truncated or not a PNG)')
    return img


def write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f'could not write {path}')


class CityscapesDataset:
    """
    Cityscapes frames as samples: dicts of numpy arrays.

    rgb (H, W, 3) uint8, labels (H, W) uint8 train ids with 255 ignored, instances (H, W) int32 (0
    = none), depth (H, W) float32 metres with NaN invalid (when `with_depth`), camera (dict), name.
    """

    class_names = CITYSCAPES_NAMES

    def __init__(self, root: str | Path, split: str = 'train', with_depth: bool = True):
        self.root, self.split, self.with_depth = Path(root), split, with_depth
        images = self.root / 'leftImg8bit' / split
        if not images.is_dir():
            raise DatasetError(f'Cityscapes tree not found: {images} is missing '
                               f'(expected root/leftImg8bit/{split}/<city>/*_leftImg8bit.png)')
        self.stems = sorted(p.relative_to(images).as_posix()[: -len('_leftImg8bit.png')]
                            for p in images.glob('*/*_leftImg8bit.png'))
        if not self.stems:
            raise DatasetError(f'no *_leftImg8bit.png images under {images}/<city>/')
        for stem in self.stems:      # name the first missing file now, not mid-training
            for path in self._paths(stem).values():
                if not path.is_file():
                    raise DatasetError(f'Cityscapes tree incomplete: {path} is missing')

    def _paths(self, stem: str) -> dict[str, Path]:
        gt = self.root / 'gtFine' / self.split / f'{stem}_gtFine_'
        paths = {'rgb': self.root / 'leftImg8bit' / self.split / f'{stem}_leftImg8bit.png',
                 'labels': Path(f'{gt}labelIds.png'), 'instances': Path(f'{gt}instanceIds.png')}
        if self.with_depth:
            paths['disparity'] = self.root / 'disparity' / self.split / f'{stem}_disparity.png'
            paths['camera'] = self.root / 'camera' / self.split / f'{stem}_camera.json'
        return paths

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, i: int) -> dict:
        stem = self.stems[i]
        paths = self._paths(stem)
        bgr = read_png(paths['rgb'], cv2.IMREAD_COLOR)
        label_ids = read_png(paths['labels'])
        if label_ids.ndim != 2 or label_ids.dtype != np.uint8:
            raise DatasetError(f"{paths['labels']} must be a single-channel 8-bit label image, "
                               f'got {label_ids.dtype} {label_ids.shape}')
        instances = read_png(paths['instances']).astype(np.int32)
        sample = {'name': stem, 'rgb': bgr[..., ::-1].copy(),
                  'labels': label_ids_to_train_ids(label_ids),
                  'instances': decode_instances(instances)}
        if self.with_depth:
            camera = _read_camera(paths['camera'])
            disparity = disparity_png_to_disparity(read_png(paths['disparity']))
            with np.errstate(divide='ignore'):
                depth = camera['baseline'] * camera['fx'] / disparity
            sample['depth'] = np.where(disparity > 0, depth, np.nan).astype(np.float32)
            sample['camera'] = camera
        shapes = {k: v.shape[:2] for k, v in sample.items() if isinstance(v, np.ndarray)}
        if len(set(shapes.values())) != 1:
            raise DatasetError(f'{stem}: image sizes differ between files: {shapes}')
        return sample


def _read_camera(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return {'baseline': float(data['extrinsic']['baseline']),
                'fx': float(data['intrinsic']['fx']), 'fy': float(data['intrinsic']['fy']),
                'u0': float(data['intrinsic']['u0']), 'v0': float(data['intrinsic']['v0'])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f'malformed camera file {path}: {e}') from e


def write_cityscapes_sample(root: Path, split: str, stem: str, rgb: np.ndarray,
                            train_ids: np.ndarray, instances: np.ndarray,
                            disparity: np.ndarray, camera: dict) -> None:
    """
    Write one frame in the Cityscapes layout.

    `camera`: baseline, fx, fy, u0, v0, and optionally pitch and height.
    """
    root = Path(root)
    gt = root / 'gtFine' / split
    write_png(root / 'leftImg8bit' / split / f'{stem}_leftImg8bit.png', rgb[..., ::-1])
    write_png(gt / f'{stem}_gtFine_labelIds.png', train_ids_to_label_ids(train_ids))
    write_png(gt / f'{stem}_gtFine_labelTrainIds.png', train_ids.astype(np.uint8))
    write_png(gt / f'{stem}_gtFine_instanceIds.png',
              encode_instances(train_ids, instances).astype(np.uint16))
    write_png(root / 'disparity' / split / f'{stem}_disparity.png', disparity_to_png(disparity))
    cam_path = root / 'camera' / split / f'{stem}_camera.json'
    cam_path.parent.mkdir(parents=True, exist_ok=True)
    cam_path.write_text(json.dumps({
        'extrinsic': {'baseline': camera['baseline'], 'pitch': camera.get('pitch', 0.0),
                      'roll': 0.0, 'yaw': 0.0, 'x': 0.0, 'y': 0.0, 'z': camera.get('z', 0.0)},
        'intrinsic': {'fx': camera['fx'], 'fy': camera['fy'], 'u0': camera['u0'],
                      'v0': camera['v0']}}, indent=2))
