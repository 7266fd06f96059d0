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
Sensor models against their specifications.

Scenes are flat walls and boxes whose exact depth is known, so every expected value comes from
the device formula, not from the code under test.
"""
import dataclasses

from depthgate_ros.data.sensors import (jittered, measure, PRESETS, RGBDCamera, sensor_by_name,
                                        sensor_from_config, StereoRig)
import numpy as np
import pytest

QUIET = {'edge_jump': 0.0, 'baseline_m': 0.0}           # no holes from geometry
TEXTURE = np.random.default_rng(9).integers(0, 255, (200, 300, 3), dtype=np.uint8)


def wall(z: float, shape=(200, 300)) -> np.ndarray:
    return np.full(shape, z, np.float32)


def _std(sensor, z, seed=0):
    out = measure(sensor, wall(z), 500.0, np.random.default_rng(seed), TEXTURE)
    assert np.isfinite(out).mean() > 0.9, 'the wall should be measured'
    return float(np.nanstd(out - z))


@pytest.mark.parametrize('z', [5.0, 10.0])
def test_rgbd_axial_noise_grows_with_the_square_of_range(z):
    d435 = dataclasses.replace(PRESETS['realsense_d435'], dropout_fraction=0.0, **QUIET)
    # vendor formula: RMS = z^2 * subpixel / (focal * baseline), 0.08 px, 430 px, 50 mm
    expected = z ** 2 * 0.08 / (430 * 0.05)
    assert _std(d435, z) == pytest.approx(expected, rel=0.1)
    kinect = dataclasses.replace(PRESETS['kinect'], max_range_m=12.0, dropout_fraction=0.0,
                                 **QUIET)
    assert _std(kinect, z) == pytest.approx(0.0012 + 0.0019 * z ** 2, rel=0.1)


def test_rgbd_range_quantisation_and_sky():
    cam = RGBDCamera(dropout_fraction=0.0, noise_per_m2=0.001, **QUIET)
    scene = np.array([[0.2, 0.35, 3.0, 9.9, 10.5, np.nan, 0.0, np.inf]], np.float32)
    out = measure(cam, np.repeat(scene, 4, 0), 500.0, np.random.default_rng(0))
    valid = np.isfinite(out[0])
    assert valid.tolist() == [False, True, True, True, False, False, False, False]
    mm = out[np.isfinite(out)] * 1000
    np.testing.assert_allclose(mm, np.round(mm), atol=1e-3)     # 16UC1 millimetres


@pytest.mark.parametrize('fraction', [0.02, 0.1])
def test_rgbd_dropout_covers_the_configured_fraction_in_blobs(fraction):
    cam = RGBDCamera(dropout_fraction=fraction, **QUIET)
    out = measure(cam, wall(3.0), 500.0, np.random.default_rng(1))
    holes = ~np.isfinite(out)
    assert holes.mean() == pytest.approx(fraction, abs=0.002)
    # blobs, not salt: most hole pixels have a hole neighbour
    neighbour = holes[1:-1, 1:-1] & (holes[:-2, 1:-1] | holes[2:, 1:-1])
    assert neighbour.sum() > 0.8 * holes[1:-1, 1:-1].sum()


def test_shadow_beside_a_near_object_has_the_parallax_width():
    z = wall(4.0)
    z[:, 150:200] = 1.0                       # a box 1 m away in front of a wall at 4 m
    cam = RGBDCamera(noise_per_m2=0.0, dropout_fraction=0.0, edge_jump=0.0, baseline_m=0.05)
    out = measure(cam, z, 600.0, np.random.default_rng(0))
    width = 600.0 * 0.05 * (1 / 1.0 - 1 / 4.0)            # f b (1/z_near - 1/z_far) = 22.5 px
    # hidden: the wall pixels x with x > 150 - width, on the box's left (the baseline points right)
    missing = np.flatnonzero(~np.isfinite(out[100]))
    assert missing.tolist() == list(range(int(np.floor(150 - width)) + 1, 150))
    assert np.isfinite(out[:, 150:]).all() and np.isfinite(out[:, :127]).all()


def test_depth_discontinuities_lose_returns():
    z = wall(4.0)
    z[:, 150:] = 8.0
    cam = RGBDCamera(noise_per_m2=0.0, dropout_fraction=0.0, baseline_m=0.0, edge_jump=0.1,
                     edge_px=2)
    holes = ~np.isfinite(measure(cam, z, 600.0, np.random.default_rng(0)))
    assert holes[:, 148:152].all() and holes.sum() == 4 * 200


@pytest.mark.parametrize('z', [10.0, 20.0, 40.0])
def test_stereo_depth_error_follows_z_squared_over_f_b(z):
    rig = StereoRig(focal_px=2000.0, baseline_m=0.2, disparity_noise_px=0.3,
                    min_disparity_px=1.0, texture_threshold=0.0, edge_jump=0.0,
                    outlier_fraction=0.0)
    # first-order error propagation: sigma_z = z^2 / (f B) * sigma_d
    out = measure(rig, wall(z), 0.0, np.random.default_rng(2), TEXTURE)
    err = out - z
    assert float(np.nanstd(err)) == pytest.approx(z ** 2 / (2000 * 0.2) * 0.3, rel=0.1)


def test_stereo_range_ends_where_disparity_falls_below_its_minimum():
    rig = StereoRig(focal_px=1000.0, baseline_m=0.2, disparity_noise_px=0.0, subpixel=1 / 16,
                    min_disparity_px=4.0, texture_threshold=0.0, edge_jump=0.0,
                    outlier_fraction=0.0)
    assert rig.max_range_m == pytest.approx(50.0)
    scene = np.repeat(np.array([[30.0, 49.0, 51.0, 80.0]], np.float32), 3, 0)
    out = measure(rig, scene, 0.0, np.random.default_rng(0), TEXTURE[:3, :4])
    assert np.isfinite(out[0]).tolist() == [True, True, False, False]
    # disparity quantised to 1/16 px: 200/30 = 6.667 px -> 6.6875 px -> 29.907 m
    assert out[0, 0] == pytest.approx(200 / (round(200 / 30 * 16) / 16), rel=1e-5)


def test_stereo_mismatches_cover_the_configured_fraction():
    rig = StereoRig(focal_px=1000.0, baseline_m=0.2, disparity_noise_px=0.1, min_disparity_px=1.0,
                    texture_threshold=0.0, edge_jump=0.0, outlier_fraction=0.05)
    z = np.tile(np.linspace(2.0, 20.0, 300, dtype=np.float32), (200, 1))
    out = measure(rig, z, 0.0, np.random.default_rng(3), TEXTURE)
    # off by more than 0.5 px of disparity (5 sigma of the noise): a mismatch, unless its uniform
    # draw over 1-100 px landed within 0.5 px of the truth (about 1 in 99)
    off = np.abs(200.0 / out - 200.0 / z) > 0.5
    assert off.mean() == pytest.approx(0.05 * (1 - 1 / 99), abs=0.005)


def test_stereo_finds_no_match_on_textureless_surfaces():
    rgb = TEXTURE.copy()
    rgb[:, :150] = 128                              # a flat grey wall on the left half
    rig = StereoRig(disparity_noise_px=0.0, edge_jump=0.0, outlier_fraction=0.0)
    out = measure(rig, wall(10.0), 0.0, np.random.default_rng(0), rgb)
    assert not np.isfinite(out[:, :140]).any()
    assert np.isfinite(out[:, 160:]).all()


def test_presets_by_kind_and_config_overrides():
    assert sensor_by_name('exact') is None
    assert sensor_by_name('rgbd') is PRESETS['realsense_d435']
    assert sensor_by_name('stereo') is PRESETS['car_stereo']
    rig = sensor_from_config({'preset': 'car_stereo', 'disparity_noise_px': 0.5})
    assert rig.disparity_noise_px == 0.5 and rig.baseline_m == 0.22
    with pytest.raises(ValueError, match='unknown depth sensor'):
        sensor_by_name('lidar')
    with pytest.raises(ValueError, match='unknown stereo sensor keys'):
        sensor_from_config({'preset': 'stereo', 'noise_per_m2': 0.1})


def test_jitter_changes_noise_not_geometry():
    rng = np.random.default_rng(0)
    draws = [jittered(PRESETS['car_stereo'], rng) for _ in range(50)]
    noise = np.array([d.disparity_noise_px for d in draws])
    assert 0.125 <= noise.min() < 0.2 and 0.35 < noise.max() <= 0.5
    assert {d.baseline_m for d in draws} == {0.22} and {d.focal_px for d in draws} == {2262.0}
