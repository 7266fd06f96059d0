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
A real-image teacher: a published ESPNetv2 segmentation file, run whole, once per frame.

Its class probabilities are the soft targets of distillation (`distill` in a stage's loss).
They are computed once before training and cached on disk at half the frame's size: the
teacher is several times slower than the student, so running it inside the training loop
would cost more than the student's own steps. Augmentation then moves the cached map with
the frame (data/transforms.py), so every crop, scale and flip sees targets that line up.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.labels import CITYSCAPES_NAMES
from ..inference import image_input
from ..model.checkpoint import IMAGENET_MEAN, IMAGENET_STD
from ..model.espnetv2 import ESPNetv2Segmentation, WIDTHS

log = logging.getLogger(__name__)


class TeacherError(ValueError):
    pass


def load_published(path: str | Path) -> ESPNetv2Segmentation:
    """Build the ESPNetv2 segmentation network whose shapes a published file has, and load it."""
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f'teacher weights not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    for width in WIDTHS:
        net = ESPNetv2Segmentation(width)
        own = net.state_dict()
        if own.keys() == state.keys() and all(own[k].shape == v.shape
                                              for k, v in state.items()):
            net.load_state_dict(state)
            return net.eval()
    raise TeacherError(f'{path.name} is not a published ESPNetv2 segmentation file of 20 '
                       f'classes (widths tried: {sorted(WIDTHS)})')


class Teacher:
    """
    Soft targets in the model's 19 Cityscapes classes from a published Cityscapes file.

    The file's 20th output (background) is dropped and the rest renormalised. Frames are
    resized to `input_size` (the Cityscapes files label a 360 x 480 CamVid frame best stretched
    to 512 x 1024, their training shape: docs/results.md), and `flip` averages in the mirrored
    frame.
    """

    def __init__(self, weights: str | Path, input_size=(512, 1024), flip: bool = False,
                 device: str | torch.device = 'cpu'):
        self.net = load_published(weights).to(device)
        self.input_size = tuple(int(s) for s in input_size)
        self.flip, self.device = flip, torch.device(device)
        # the published networks take ImageNet-normalised RGB, as this package's models do
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device)
        self.std = torch.tensor(IMAGENET_STD, device=self.device)

    @torch.no_grad()
    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (19, ceil(H/2), ceil(W/2)) float16 class probabilities."""
        h, w = rgb.shape[:2]
        x = image_input(rgb, self.mean, self.std, self.device)
        x = F.interpolate(x, size=self.input_size, mode='bilinear', align_corners=False)
        p = self.net(x).softmax(1)
        if self.flip:
            p = (p + self.net(x.flip(3)).softmax(1).flip(3)) / 2
        p = F.interpolate(p[:, :len(CITYSCAPES_NAMES)], size=((h + 1) // 2, (w + 1) // 2),
                          mode='bilinear', align_corners=False)[0]
        return (p / p.sum(0, keepdim=True).clamp_min(1e-6)).half().cpu().numpy()


class SoftTargets:
    """The cached soft targets of one dataset's frames, by frame name, at the frame's size."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def path(self, name: str) -> Path:
        return self.dir / f'{name.replace("/", "_")}.npy'

    def __call__(self, name: str, size: tuple[int, int]) -> np.ndarray:
        p = torch.from_numpy(np.load(self.path(name)).astype(np.float32))[None]
        return F.interpolate(p, size=size, mode='bilinear', align_corners=False)[0].numpy()

    def build(self, raw, teacher: Teacher) -> None:
        """Run the teacher on every frame of `raw` that has no cached targets yet."""
        self.dir.mkdir(parents=True, exist_ok=True)
        todo = [i for i in range(len(raw)) if not self.path(raw[i]['name']).is_file()]
        if todo:
            log.info('teacher: %d of %d frames to run, into %s', len(todo), len(raw), self.dir)
        for n, i in enumerate(todo):
            sample = raw[i]
            probs = teacher.probabilities(sample['rgb'])
            # renamed into place: an interrupted build leaves no half-written targets behind
            path = self.path(sample['name'])
            tmp = path.with_name(f'.{path.name}.part')
            with open(tmp, 'wb') as f:
                np.save(f, probs)
            tmp.replace(path)
            if (n + 1) % 50 == 0:
                log.info('teacher: %d of %d frames', n + 1, len(todo))
