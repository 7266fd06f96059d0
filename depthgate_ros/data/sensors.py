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
Depth sensors as they really are: range limits, noise, quantisation and holes.

A sensor model turns a scene's exact depth (the synthetic renderer's) into what a robot's depth
camera or stereo rig would report: float32 metres, NaN where it gives no data (REP 118). Noise
follows the sensor's own optics (its native focal length and baseline), so a frame rendered
small still carries the device's metric error; hole geometry (shadows, edges, blobs) is laid out
in the image's own pixels, from the image's focal length.

Both kinds have a second viewpoint a baseline to the right of the reference camera (the
projector or emitter of an RGB-D camera, the right camera of a stereo rig). Surfaces that
viewpoint cannot see return nothing: a band on the left of every near object whose width is
f * b * (1/z_near - 1/z_far) pixels.

`depthgate-eval --sensor-depth`, `depthgate-make-bag`, the demo and training all measure through
`measure()`; docs/sensors.md lists the presets with their sources.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class RGBDCamera:
    """
    Structured light, active stereo or time of flight, read out as 16UC1 millimetres.

    Axial noise std = noise_floor_m + noise_per_m2 * z^2. For active stereo, noise_per_m2 is
    subpixel / (focal_px * baseline_m) (the vendor formula).
    """

    min_range_m: float = 0.3
    max_range_m: float = 10.0
    noise_floor_m: float = 0.0
    noise_per_m2: float = 0.0042
    unit_m: float = 0.001            # 16UC1 millimetres
    baseline_m: float = 0.05         # to the projector / second imager: shadow width
    edge_jump: float = 0.1           # relative depth step where returns are lost ...
    edge_px: int = 1                 # ... over this many pixels each side
    dropout_fraction: float = 0.02   # random blobs without data (dark, specular, glass)
    dropout_blob_px: int = 8

    kind = 'rgbd'


@dataclass(frozen=True)
class StereoRig:
    """
    Passive stereo: disparity with sub-pixel noise, so depth error grows as z^2 / (f B).

    Depth std = z^2 / (focal_px * baseline_m) * disparity_noise_px. Disparity below
    min_disparity_px is invalid, so the range ends at focal_px * baseline_m / min_disparity_px;
    so is disparity in textureless regions (mean gradient below texture_threshold, grey levels
    per pixel, over texture_window_px). A fraction of pixels are mismatches: a disparity drawn
    uniformly from the valid range, as semi-global matching's streaks and speckles are.
    """

    focal_px: float = 2262.0         # the sensor's native focal length, in its own pixels
    baseline_m: float = 0.22
    disparity_noise_px: float = 0.25
    subpixel: float = 1.0 / 16       # disparity quantisation step (semi-global matching)
    min_disparity_px: float = 4.0
    texture_threshold: float = 5.0
    texture_window_px: int = 5
    outlier_fraction: float = 0.01
    edge_jump: float = 0.1
    edge_px: int = 1

    kind = 'stereo'

    @property
    def max_range_m(self) -> float:
        return self.focal_px * self.baseline_m / self.min_disparity_px


Sensor = RGBDCamera | StereoRig

# Typical devices; docs/sensors.md gives the numbers' sources.
PRESETS: dict[str, Sensor] = {
    # Intel RealSense D435 at 848x480: 50 mm baseline, ~430 px focal, 0.08 px subpixel RMS.
    'realsense_d435': RGBDCamera(min_range_m=0.3, max_range_m=10.0, noise_floor_m=0.0,
                                 noise_per_m2=0.08 / (430.0 * 0.05), baseline_m=0.05),
    # Kinect-class structured light (Kinect v1): 0.5-4.5 m, sigma ~ 1.2 mm + 1.9 mm * (z/m)^2.
    'kinect': RGBDCamera(min_range_m=0.5, max_range_m=4.5, noise_floor_m=0.0012,
                         noise_per_m2=0.0019, baseline_m=0.075, dropout_fraction=0.03),
    # A car's stereo pair as Cityscapes records it: 0.22 m baseline, 2262 px focal.
    'car_stereo': StereoRig(),
}
DEFAULT_PRESET = {'rgbd': 'realsense_d435', 'stereo': 'car_stereo'}
# What tools offer: the exact render, a sensor kind (its default preset) or a preset by name.
CHOICES = ('exact',) + tuple(DEFAULT_PRESET) + tuple(PRESETS)


def sensor_by_name(name: str) -> Sensor | None:
    """Return the named preset, a kind's default preset, or None for `exact`."""
    if name == 'exact':
        return None
    key = DEFAULT_PRESET.get(name, name)
    if key not in PRESETS:
        raise ValueError(f'unknown depth sensor {name!r}; choose from {", ".join(CHOICES)}')
    return PRESETS[key]


def sensor_from_config(spec: str | dict) -> Sensor | None:
    """Build a sensor from a name or a dict: {preset: car_stereo, disparity_noise_px: 0.5}."""
    if isinstance(spec, str):
        return sensor_by_name(spec)
    spec = dict(spec)
    base = sensor_by_name(spec.pop('preset', 'exact'))
    if base is None:
        if spec:
            raise ValueError(f'the exact sensor takes no parameters, got {sorted(spec)}')
        return None
    known = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f'unknown {base.kind} sensor keys {unknown}; known: {sorted(known)}')
    return dataclasses.replace(base, **spec)


def jittered(sensor: Sensor, rng: np.random.Generator, spread: float = 2.0) -> Sensor:
    """
    Draw a device of the same kind: each noise and hole parameter times a log-uniform factor.

    The factor lies in [1/spread, spread]. Baseline, focal length and an RGB-D camera's range
    are kept; a stereo rig's range follows its drawn minimum disparity.
    """
    names = ('noise_floor_m', 'noise_per_m2', 'edge_jump', 'dropout_fraction',
             'disparity_noise_px', 'texture_threshold', 'min_disparity_px', 'outlier_fraction')
    changes = {n: getattr(sensor, n) * float(np.exp(rng.uniform(-1, 1) * np.log(spread)))
               for n in names if hasattr(sensor, n)}
    return dataclasses.replace(sensor, **changes)


def measure(sensor: Sensor | None, depth: np.ndarray, focal_px: float,
            rng: np.random.Generator, rgb: np.ndarray | None = None) -> np.ndarray:
    """
    Return the depth (H, W) float32 metres, NaN invalid, that `sensor` reports for a scene.

    `depth` is the scene's exact depth (NaN where there is nothing, e.g. sky), `focal_px` the
    image's horizontal focal length, `rgb` (H, W, 3) uint8 the view (stereo needs its texture).
    `sensor` None is the exact depth itself.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if sensor is None:
        return depth.copy()
    exact = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
    holes = edge_holes(exact, sensor.edge_jump, sensor.edge_px)
    holes |= shadow_holes(exact, focal_px * sensor.baseline_m)
    if isinstance(sensor, RGBDCamera):
        out = _rgbd(sensor, exact, rng)
        holes |= dropout_holes(exact.shape, sensor.dropout_fraction, sensor.dropout_blob_px, rng)
    else:
        if rgb is None:
            raise ValueError('a stereo sensor needs the image (texture decides where it matches)')
        out = _stereo(sensor, exact, rng)
        holes |= textureless(rgb, sensor.texture_threshold, sensor.texture_window_px)
    out[holes] = np.nan
    return out


def _rgbd(s: RGBDCamera, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    in_range = (z >= s.min_range_m) & (z <= s.max_range_m)
    zz = np.where(in_range, z, np.nan)
    sigma = s.noise_floor_m + s.noise_per_m2 * zz ** 2
    noisy = zz + sigma * rng.standard_normal(z.shape).astype(np.float32)
    quantised = np.round(noisy / s.unit_m) * s.unit_m
    return np.where(quantised > 0, quantised, np.nan).astype(np.float32)


def _stereo(s: StereoRig, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    fb = s.focal_px * s.baseline_m
    with np.errstate(divide='ignore', invalid='ignore'):
        disparity = fb / z                                   # NaN stays NaN
    noisy = disparity + s.disparity_noise_px * rng.standard_normal(z.shape).astype(np.float32)
    wrong = (rng.random(z.shape) < s.outlier_fraction) & np.isfinite(disparity)
    if wrong.any():
        top = max(float(np.nanmax(disparity)), s.min_disparity_px)
        noisy[wrong] = rng.uniform(s.min_disparity_px, top, int(wrong.sum()))
    quantised = np.round(noisy / s.subpixel) * s.subpixel
    ok = np.isfinite(quantised) & (quantised >= s.min_disparity_px)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(ok, fb / quantised, np.nan).astype(np.float32)


def edge_holes(z: np.ndarray, jump: float, width_px: int) -> np.ndarray:
    """Pixels beside a relative depth step larger than `jump` (lost or mixed returns)."""
    if jump <= 0 or width_px <= 0:
        return np.zeros(z.shape, bool)
    filled = np.nan_to_num(z, nan=1e6)
    step = np.zeros(z.shape, bool)
    for axis in (0, 1):
        a = np.moveaxis(filled, axis, 0)
        rel = np.abs(a[1:] - a[:-1]) / np.minimum(a[1:], a[:-1])
        big = np.moveaxis(rel > jump, 0, axis)
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        step[tuple(lo)] |= big
        step[tuple(hi)] |= big
    if width_px > 1:
        kernel = np.ones((2 * width_px - 1,) * 2, np.uint8)
        step = cv2.dilate(step.astype(np.uint8), kernel).astype(bool)
    return step


def shadow_holes(z: np.ndarray, baseline_px_m: float) -> np.ndarray:
    """
    Pixels the second viewpoint, `baseline_px_m` = f * b to the right, cannot see.

    That viewpoint sees column x at x - f b / z; a pixel is hidden when something to its right
    lands at or left of it there.
    """
    h, w = z.shape
    if baseline_px_m <= 0:
        return np.zeros(z.shape, bool)
    cols = np.arange(w, dtype=np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        shift = np.where(np.isfinite(z), baseline_px_m / z.astype(np.float64), 0.0)
    u = cols - shift
    # the smallest u strictly to the right of each pixel
    right_min = np.minimum.accumulate(u[:, ::-1], axis=1)[:, ::-1]
    right_min = np.concatenate([right_min[:, 1:], np.full((h, 1), np.inf)], axis=1)
    return right_min < u - 1e-6


def dropout_holes(shape, fraction: float, blob_px: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random blobs covering `fraction` of the image."""
    if fraction <= 0:
        return np.zeros(shape, bool)
    h, w = shape
    coarse = rng.random((h // blob_px + 2, w // blob_px + 2)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return field > np.quantile(field, 1.0 - fraction)


def textureless(rgb: np.ndarray, threshold: float, window_px: int) -> np.ndarray:
    """Where the mean grey-level gradient over a window is below `threshold` (no match)."""
    grey = np.asarray(rgb, np.float32).mean(-1)
    gx = np.abs(np.diff(grey, axis=1, append=grey[:, -1:]))
    gy = np.abs(np.diff(grey, axis=0, append=grey[-1:]))
    energy = cv2.blur(gx + gy, (window_px, window_px))
    return energy < threshold


def sample_focal(sample: dict) -> float:
    """Return the horizontal focal length in pixels of a sample's camera (sensors need it)."""
    focal = sample.get('focal_px') or (sample.get('camera') or {}).get('fx')
    if not focal:
        raise ValueError(f"sample {sample.get('name', '?')} gives no focal length; a simulated "
                         'sensor needs one (measured depth is used as it is: `exact`)')
    return float(focal)
