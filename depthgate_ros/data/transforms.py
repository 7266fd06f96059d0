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
Paired training augmentation (paper section 5), built on torchvision transforms v2.

Random scale s in [0.5, 2] (depth divided by s, disparity multiplied by s: a scaled-up image
looks like a closer scene), in-plane rotation in [-10, 10] degrees, horizontal flip, random
crop with sides divisible by 8, colour jitter on RGB only. Labels and depth are resampled
nearest-neighbour, so no label value and no depth value is invented; areas uncovered by
rotation or padding get label 255 (ignore) and invalid depth.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IGNORE_ID = 255


class Depth(tv_tensors.Mask):
    """Metric depth, resampled like a mask; 0 marks invalid while inside the pipeline."""


class Disparity(tv_tensors.Mask):
    """Stereo disparity in pixels, resampled like a mask; 0 marks invalid."""


class SoftTarget(tv_tensors.Mask):
    """A teacher's class probabilities (C, H, W), resampled like a mask; all-zero = no target."""


# Sample keys resampled as depth or disparity: the ground truth and what a sensor measured.
DEPTH_KINDS = {'depth': Depth, 'sensor_depth': Depth, 'disparity': Disparity}
# The fill for uncovered areas, per kind of data (exact types: torchvision matches by type).
FILL = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_ID, Depth: 0.0, Disparity: 0.0,
        SoftTarget: 0.0}


class RandomScale(v2.Transform):
    """Resize by a random factor s; depth / s and disparity * s keep the geometry consistent."""

    def __init__(self, scale_range: Sequence[float] = (0.5, 2.0)):
        super().__init__()
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f'scale_range must be 0 < lo <= hi, got {scale_range}')
        self.scale_range = (float(lo), float(hi))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        # Uniform in log scale: zooming in and out by the same factor are equally likely.
        s = math.exp(float(torch.empty(1).uniform_(*map(math.log, self.scale_range))))
        return {'scale': s, 'size': [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        out = F.resize(inpt, params['size'], antialias=True)
        if isinstance(inpt, Depth):
            out = tv_tensors.wrap(out / params['scale'], like=inpt)
        elif isinstance(inpt, Disparity):
            out = tv_tensors.wrap(out * params['scale'], like=inpt)
        return out


class PairedAugment:
    """
    Training augmentation on a sample dict.

    The sample holds rgb (H, W, 3) uint8, labels (H, W), and any of depth, sensor_depth,
    disparity (H, W) float with NaN invalid, and teacher (C, H, W) soft targets. Returns
    tensors: rgb (3, h, w) uint8, labels (h, w) int64, depth / sensor_depth / disparity (h, w)
    float32 with NaN invalid, teacher (C, h, w) (zero where the frame does not reach), and
    the scale s.
    `crop` is (height, width), both divisible by 8 (the network's output stride).
    """

    def __init__(self, crop: Sequence[int] = (512, 512), scale_range=(0.5, 2.0),
                 max_rotation_deg: float = 10.0, flip_p: float = 0.5,
                 color_jitter: float = 0.3):
        crop = tuple(int(c) for c in crop)
        if len(crop) != 2 or any(c <= 0 or c % 8 for c in crop):
            raise ValueError(f'crop sides must be positive multiples of 8, got {crop}')
        self.crop = crop
        self.scale = RandomScale(scale_range)
        self.geometry = v2.Compose([
            v2.RandomRotation(max_rotation_deg, interpolation=v2.InterpolationMode.BILINEAR,
                              fill=FILL),
            v2.RandomHorizontalFlip(flip_p),
            v2.RandomCrop(crop, pad_if_needed=True, fill=FILL),
        ])
        cj = color_jitter
        self.color = v2.ColorJitter(cj, cj, cj, min(cj / 3, 0.5)) if cj > 0 else v2.Identity()

    def __call__(self, sample: dict) -> dict:
        inputs = {'rgb': tv_tensors.Image(torch.from_numpy(
                      np.ascontiguousarray(sample['rgb'])).permute(2, 0, 1)),
                  'labels': tv_tensors.Mask(torch.from_numpy(
                      np.asarray(sample['labels']).astype(np.int64)))}
        for key, kind in DEPTH_KINDS.items():
            if sample.get(key) is not None:
                d = np.asarray(sample[key], np.float32)
                valid = np.isfinite(d) & (d > 0)
                inputs[key] = kind(torch.from_numpy(np.where(valid, d, 0.0)).unsqueeze(0))
        if sample.get('teacher') is not None:
            inputs['teacher'] = SoftTarget(torch.from_numpy(np.asarray(sample['teacher'],
                                                                       np.float32)))
        # The scale factor is needed afterwards, so draw it here rather than inside Compose.
        params = self.scale.make_params(list(inputs.values()))
        inputs = {k: self.scale.transform(v, params) for k, v in inputs.items()}
        inputs = self.geometry(inputs)
        inputs['rgb'] = self.color(inputs['rgb'])
        out = {'rgb': inputs['rgb'].as_subclass(torch.Tensor),
               'labels': inputs['labels'].as_subclass(torch.Tensor),
               'scale': params['scale']}
        if 'teacher' in inputs:
            out['teacher'] = inputs['teacher'].as_subclass(torch.Tensor)
        for key in DEPTH_KINDS:
            if key in inputs:
                d = inputs[key].as_subclass(torch.Tensor)[0]
                out[key] = torch.where(d > 0, d, torch.full_like(d, float('nan')))
        return out
