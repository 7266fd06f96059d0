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

"""Labels and planes upsampled here, held to torch's own bilinear resize (and an argmax)."""
from depthgate_ros.label_upsampling import integer_factor, upsampled_labels, upsampled_planes
import pytest
import torch
import torch.nn.functional as F


def _reference(scores, size):
    up = F.interpolate(scores[None].double(), size=size, mode='bilinear', align_corners=False)[0]
    top2 = up.topk(2, 0).values
    return up.argmax(0), (top2[0] - top2[1]) < 1e-5    # labels, near-ties


def _blobs(classes, h, w, seed, noise=0.3):
    """Scores of a label map in blobs (mostly uniform cells) plus noise: like a network's."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, classes, h // 6 + 2, w // 6 + 2, generator=g)
    smooth = F.interpolate(coarse, size=(h, w), mode='bicubic', align_corners=False)[0]
    return 4 * smooth + noise * torch.randn(classes, h, w, generator=g)


@pytest.mark.parametrize('h, w, size', [
    (15, 20, (120, 160)),    # stride 8, as a camera frame
    (15, 20, (480, 640)),    # stride 32 (the fast model's gate)
    (12, 10, (36, 50)),      # odd factors, different per axis
    (9, 7, (18, 7 * 6)),
])
@pytest.mark.parametrize('seed', [0, 1])
def test_labels_equal_torch_resize_then_argmax(h, w, size, seed):
    """Input tried: blob-like scores of 19 classes, and pure noise (every cell mixed)."""
    for scores in (_blobs(19, h, w, seed),
                   torch.randn(19, h, w, generator=torch.Generator().manual_seed(seed))):
        ref, tie = _reference(scores, size)
        got = upsampled_labels(scores, size)
        assert got.shape == size and got.dtype == torch.long
        wrong = (got != ref) & ~tie
        assert not wrong.any(), f'{int(wrong.sum())} pixels differ'
        # as the Predictor asks: narrow labels, scores channels last as the network leaves them
        channels_last = scores[None].contiguous(memory_format=torch.channels_last)[0]
        narrow = upsampled_labels(channels_last, size, torch.uint8)
        assert narrow.dtype == torch.uint8 and torch.equal(narrow.long(), got)


def test_uniform_cells_are_not_recomputed(monkeypatch):
    """Only cells with disagreeing corners go through the weighted sum: count its rows."""
    scores = _blobs(19, 30, 40, 3, noise=0.0)
    low = scores.argmax(0)
    rows = []
    real = torch.Tensor.__matmul__
    # the product's right side holds the 4 corners' 19 scores of each recomputed cell
    monkeypatch.setattr(torch.Tensor, '__matmul__',
                        lambda a, b: rows.append(b.shape[1] / 19) or real(a, b))
    upsampled_labels(scores, (240, 320))
    padded = F.pad(low[None, None].float(), (1, 1, 1, 1), mode='replicate')[0, 0]
    corners = [padded[:-1, :-1], padded[1:, :-1], padded[:-1, 1:], padded[1:, 1:]]
    n_mixed = int(((corners[0] != corners[1]) | (corners[0] != corners[2])
                   | (corners[0] != corners[3])).sum())
    assert rows == [n_mixed] and 0 < n_mixed < 0.5 * 31 * 41


def test_only_whole_enlargements():
    """Input tried: a shrink, the same size and 1.5x; each refused with the sizes named."""
    scores = torch.randn(19, 8, 8)
    assert integer_factor((8, 8), (64, 16)) and not integer_factor((8, 8), (12, 16))
    for size in ((4, 4), (8, 8), (12, 16)):
        assert not integer_factor((8, 8), size)
        with pytest.raises(ValueError, match=f'{size[0]}x{size[1]}'):
            upsampled_labels(scores, size)


@pytest.mark.parametrize('shape, size', [
    ((1, 1, 15, 20), (480, 640)),     # the fast model's depth on a camera frame
    ((1, 5, 15, 20), (120, 160)),     # gate weights, several planes at once
    ((1, 1, 12, 10), (37, 10)),       # a factor that is no whole number; one axis kept
    ((2, 1, 7, 9), (8, 200)),
])
def test_planes_equal_torch_resize(shape, size):
    """Input tried: random planes at whole, fractional and unit factors."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    got = upsampled_planes(x, size)
    assert got.shape == ref.shape and got.is_contiguous()
    # float rounding only: interpolate computes its scale in float32, the matrices in float64
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_planes_refuse_to_shrink():
    """Input tried: 15 x 20 to 480 x 10; shrinking needs antialiasing, which this does not do."""
    with pytest.raises(ValueError, match='20 -> 10'):
        upsampled_planes(torch.zeros(1, 1, 15, 20), (480, 10))
