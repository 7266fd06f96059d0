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

"""Paired augmentation invariants (paper section 5)."""
from depthgate_ros.data.synthetic import Camera, render_frame, SKY
from depthgate_ros.data.transforms import PairedAugment
import numpy as np
import pytest
import torch

SMALL = Camera(width=256, height=128, fx=280.0, fy=280.0)


@pytest.fixture(scope='module')
def frame():
    return render_frame(6, SMALL)


def _sample(f):
    return {'rgb': f.rgb, 'labels': f.labels, 'depth': f.depth, 'disparity': f.disparity}


def test_depth_divided_by_scale_and_disparity_multiplied(frame):
    aug = PairedAugment(crop=(128, 256), scale_range=(1.6, 1.6), max_rotation_deg=0,
                        flip_p=0, color_jitter=0)
    torch.manual_seed(0)
    out = aug(_sample(frame))
    assert out['scale'] == pytest.approx(1.6)
    d = out['depth'].numpy()
    valid = np.isfinite(d)
    # every output depth is some input depth / s (nearest resampling invents none)
    src = np.sort(frame.depth[np.isfinite(frame.depth)])
    back = d[valid] * 1.6
    nearest = src[np.clip(np.searchsorted(src, back), 0, src.size - 1)]
    lower = src[np.clip(np.searchsorted(src, back) - 1, 0, src.size - 1)]
    gap = np.minimum(np.abs(nearest - back), np.abs(lower - back))
    assert np.all(gap <= 1e-5 * back)
    # disparity * depth stays f * B / 1: geometry is consistent after scaling
    np.testing.assert_allclose(out['disparity'].numpy()[valid] * d[valid],
                               SMALL.fx * SMALL.baseline_m, rtol=1e-5)


@pytest.mark.parametrize('seed', range(6))
def test_invalid_stays_invalid_and_no_label_is_invented(frame, seed):
    aug = PairedAugment(crop=(96, 160))
    torch.manual_seed(seed)
    out = aug(_sample(frame))
    labels, depth = out['labels'].numpy(), out['depth'].numpy()
    assert out['rgb'].shape == (3, 96, 160) and out['rgb'].dtype == torch.uint8
    assert labels.shape == depth.shape == (96, 160) and labels.dtype == np.int64
    assert set(np.unique(labels)) <= set(np.unique(frame.labels)) | {255}
    # In the synthetic frame, depth is missing exactly on sky. Resampled together, the pair
    # must stay consistent; padding and rotated-in corners are ignore + invalid.
    nan = np.isnan(depth)
    assert np.all(nan[labels == SKY])
    assert np.all(np.isin(labels[nan], [SKY, 255]))
    assert np.all(nan[labels == 255])
    assert np.all(depth[~nan] > 0)


def test_flip_mirrors_every_array_together(frame):
    aug = PairedAugment(crop=(128, 256), scale_range=(1, 1), max_rotation_deg=0, flip_p=1.0,
                        color_jitter=0)
    out = aug(_sample(frame))
    np.testing.assert_array_equal(out['labels'].numpy(), frame.labels[:, ::-1])
    np.testing.assert_array_equal(out['rgb'].permute(1, 2, 0).numpy(), frame.rgb[:, ::-1])
    np.testing.assert_array_equal(out['depth'].numpy(), frame.depth[:, ::-1])


def test_small_images_are_padded_with_ignore_and_invalid(frame):
    aug = PairedAugment(crop=(256, 512), scale_range=(1, 1), max_rotation_deg=0, flip_p=0,
                        color_jitter=0)
    out = aug(_sample(frame))
    labels = out['labels'].numpy()
    assert labels.shape == (256, 512)
    assert (labels == 255).sum() == 256 * 512 - 128 * 256
    assert np.isnan(out['depth'].numpy()).sum() == (labels == 255).sum() + (
        frame.labels == SKY).sum()


def test_colour_jitter_touches_rgb_only(frame):
    plain = PairedAugment(crop=(128, 256), scale_range=(1, 1), max_rotation_deg=0, flip_p=0,
                          color_jitter=0)
    jitter = PairedAugment(crop=(128, 256), scale_range=(1, 1), max_rotation_deg=0, flip_p=0,
                           color_jitter=0.4)
    torch.manual_seed(1)
    a = plain(_sample(frame))
    torch.manual_seed(1)
    b = jitter(_sample(frame))
    assert not torch.equal(a['rgb'], b['rgb'])
    assert torch.equal(a['labels'], b['labels'])
    assert torch.equal(a['depth'].nan_to_num(-1), b['depth'].nan_to_num(-1))


def test_crop_must_be_divisible_by_8():
    with pytest.raises(ValueError, match='multiples of 8'):
        PairedAugment(crop=(100, 256))
