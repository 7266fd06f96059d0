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

"""Synthetic perspective scenes: determinism, camera geometry, scale range, sequences, export."""
from depthgate_ros.data.cityscapes import CityscapesDataset, DatasetError
from depthgate_ros.data.synthetic import (Camera, CAR, export_cityscapes, PERSON, render_frame,
                                          render_sequence, SKY, StreetScene)
import numpy as np
import pytest

SMALL = Camera(width=256, height=128, fx=280.0, fy=280.0)


def test_frames_are_deterministic_per_seed():
    a, b, c = render_frame(11, SMALL), render_frame(11, SMALL), render_frame(12, SMALL)
    for key in ('rgb', 'depth', 'disparity', 'labels', 'instances'):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.rgb, c.rgb)


def test_outputs_types_and_sky_semantics():
    f = render_frame(3, SMALL)
    assert f.rgb.shape == (128, 256, 3) and f.rgb.dtype == np.uint8
    assert f.depth.dtype == f.disparity.dtype == np.float32
    assert f.labels.dtype == np.uint8 and f.instances.dtype == np.int32
    sky = f.labels == SKY
    assert sky.any() and np.array_equal(np.isnan(f.depth), sky)   # no surface <=> sky
    things = np.isin(f.labels, [CAR, PERSON])
    assert np.all(f.instances[things] > 0) and np.all(f.instances[~things] == 0)
    # textured and shaded, not flat colours: many distinct values inside one class
    road = f.rgb[f.labels == 0]
    assert len(np.unique(road.reshape(-1, 3), axis=0)) > 200


@pytest.mark.parametrize('pitch', [0.0, 3.0])
def test_ground_depth_matches_camera_geometry(pitch):
    cam = Camera(width=256, height=128, fx=280.0, fy=280.0, height_m=1.6, pitch_deg=pitch)
    f = StreetScene(5).render(cam, position_m=30.0, lateral_m=-1.75)
    col = 128                                  # a column near the optical axis
    rows = [r for r in range(70, 128) if f.labels[r, col] == 0]   # road
    assert len(rows) > 20
    p = np.deg2rad(pitch)
    for r in rows:
        v = (r + 0.5 - cam.v0) / cam.fy
        angle = p + np.arctan(v)               # below the horizon, in the column's plane
        horizontal = cam.height_m / np.tan(angle)
        # camera depth of the ground point back to a horizontal distance
        depth = f.depth[r, col]
        along = (depth - cam.height_m * np.sin(p)) / np.cos(p)
        assert along == pytest.approx(horizontal, rel=0.01)
        if pitch == 0.0:
            assert depth == pytest.approx(cam.height_m / np.tan(np.arctan(v)), rel=0.01)


def test_disparity_is_f_b_over_depth():
    f = render_frame(4, SMALL)
    valid = np.isfinite(f.depth)
    np.testing.assert_allclose(f.disparity[valid] * f.depth[valid],
                               SMALL.fx * SMALL.baseline_m, rtol=1e-5)
    assert np.all(np.isnan(f.disparity[~valid]))


def test_same_class_spans_ten_times_in_apparent_size():
    heights = []
    for seed in range(8):
        f = render_frame(seed, SMALL)
        for k in np.unique(f.instances[f.labels == CAR]):
            rows, cols = np.nonzero(f.instances == k)
            if rows.min() == 0 or rows.max() == 127 or cols.min() == 0 or cols.max() == 255:
                continue                      # cut by the image border: size unknown
            heights.append(rows.max() - rows.min() + 1)
    assert len(heights) > 20
    assert max(heights) / min(heights) >= 10


def test_sequence_is_frame_to_frame_consistent():
    frames = list(render_sequence(2, 3, SMALL, speed_mps=10.0, fps=10.0))
    a, b = frames[0], frames[1]
    assert b.position_m - a.position_m == pytest.approx(1.0)
    # back-project frame a with its depth, move the camera 1 m, project into frame b:
    # labels must agree wherever the point is visible in both.
    dirs = SMALL.rays()
    origin_a = np.array([-1.75, SMALL.height_m, a.position_m])
    origin_b = origin_a + [0.0, 0.0, 1.0]
    valid = np.isfinite(a.depth.ravel())
    pts = origin_a + dirs[valid] * a.depth.ravel()[valid, None]
    px, z = SMALL.project(pts, origin_b)
    c, r = np.floor(px[:, 0]).astype(int), np.floor(px[:, 1]).astype(int)
    inside = (z > 0) & (c >= 0) & (c < 256) & (r >= 0) & (r < 128)
    visible = inside.copy()
    visible[inside] = np.abs(b.depth[r[inside], c[inside]] - z[inside]) < 0.05 * z[inside]
    agree = a.labels.ravel()[valid][visible] == b.labels[r[visible], c[visible]]
    assert visible.sum() > 0.5 * valid.sum()
    assert agree.mean() > 0.97


def test_export_reads_back_through_the_cityscapes_loader(tmp_path):
    stems = export_cityscapes(tmp_path, 'val', [3, 4], SMALL)
    ds = CityscapesDataset(tmp_path, 'val')
    assert len(ds) == 2 and ds.stems == sorted(stems)
    for seed, sample in zip([3, 4], ds):
        f = render_frame(seed, SMALL)
        np.testing.assert_array_equal(sample['rgb'], f.rgb)
        np.testing.assert_array_equal(sample['labels'], f.labels)
        # instances: the same partition of pixels, Cityscapes-encoded
        a, b = f.instances, sample['instances']
        assert np.array_equal(a > 0, b > 0)
        pairs = set(zip(a[a > 0].tolist(), b[b > 0].tolist()))
        assert len(pairs) == len(np.unique(a[a > 0])) == len(np.unique(b[b > 0]))
        # depth: exact after the 1/256-pixel disparity quantisation of the PNG
        valid = np.isfinite(f.depth)
        assert np.array_equal(np.isfinite(sample['depth']), valid)
        q = np.round(f.disparity[valid] * 256) / 256
        np.testing.assert_allclose(sample['depth'][valid], SMALL.fx * SMALL.baseline_m / q,
                                   rtol=1e-5)
        assert np.max(np.abs(sample['depth'][valid] / f.depth[valid] - 1)) < 0.05
        assert sample['camera']['fx'] == SMALL.fx


def test_cityscapes_loader_names_the_missing_file(tmp_path):
    export_cityscapes(tmp_path, 'train', [1, 2], SMALL)
    gone = tmp_path / 'disparity/train/synthetic/synthetic_000002_000019_disparity.png'
    gone.unlink()
    with pytest.raises(DatasetError, match='synthetic_000002_000019_disparity.png is missing'):
        CityscapesDataset(tmp_path, 'train')
    assert len(CityscapesDataset(tmp_path, 'train', with_depth=False)) == 2
    with pytest.raises(DatasetError, match='leftImg8bit/val is missing'):
        CityscapesDataset(tmp_path, 'val')
    bad = tmp_path / 'gtFine/train/synthetic/synthetic_000001_000019_gtFine_labelIds.png'
    bad.write_bytes(b'not a png')
    with pytest.raises(DatasetError, match='cannot read image .*labelIds.png'):
        CityscapesDataset(tmp_path, 'train', with_depth=False)[0]
