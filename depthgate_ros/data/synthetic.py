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
Synthetic perspective street scenes with exact ground truth.

No dataset can be downloaded here, so the package renders its own: a pinhole camera looks
down a street (road, sidewalks, terrain, building blocks, cars, people, poles with signs and
lights, trees, sky), ray-cast per pixel, so depth, disparity, labels and instances are exact
and the same object class appears at apparent sizes that differ by 10x or more, which is
the situation the paper's depth gating is built for.

World frame: X right, Y up, Z along the street; the ground is Y = 0. Camera rays are built
with unit forward component, so the ray parameter t of a hit IS its depth along the optical
axis (the depth a depth camera or stereo pair reports).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

# Cityscapes train ids of the classes drawn here.
ROAD, SIDEWALK, BUILDING, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = (
    0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 13)
THING_CLASSES = (PERSON, CAR)
EGO_LANE_X = -1.75    # the camera drives here; no car is placed in this lane


@dataclass(frozen=True)
class Camera:
    """Pinhole camera on a vehicle. Defaults resemble a downscaled Cityscapes rig."""

    width: int = 512
    height: int = 256
    fx: float = 560.0
    fy: float = 560.0
    cx: float | None = None         # principal point; None = image centre
    cy: float | None = None
    height_m: float = 1.4           # above the road
    pitch_deg: float = 2.0          # positive: looking down
    baseline_m: float = 0.22        # stereo baseline, for disparity = fx * B / depth
    yaw_deg: float = 0.0            # positive: turned to the right of the driving direction

    @property
    def u0(self) -> float:
        return self.width / 2 if self.cx is None else self.cx

    @property
    def v0(self) -> float:
        return self.height / 2 if self.cy is None else self.cy

    def k_matrix(self) -> list[float]:
        """
        Row-major K in the ROS / OpenCV convention, for sensor_msgs/CameraInfo.

        Pixel centres are at integer coordinates there; this renderer puts them at +0.5.
        """
        return [self.fx, 0.0, self.u0 - 0.5, 0.0, self.fy, self.v0 - 0.5, 0.0, 0.0, 1.0]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, down, forward) unit vectors in the world frame (x right, y up, z ahead)."""
        p, y = np.deg2rad(self.pitch_deg), np.deg2rad(self.yaw_deg)
        level = np.array([np.sin(y), 0.0, np.cos(y)])        # forward, before the pitch
        up = np.array([0.0, 1.0, 0.0])
        return (np.array([np.cos(y), 0.0, -np.sin(y)]), -np.cos(p) * up - np.sin(p) * level,
                np.cos(p) * level - np.sin(p) * up)

    def rays(self) -> np.ndarray:
        """(H*W, 3) world directions through pixel centres, forward component 1."""
        right, down, fwd = self.axes()
        u = (np.arange(self.width) + 0.5 - self.u0) / self.fx
        v = (np.arange(self.height) + 0.5 - self.v0) / self.fy
        uu, vv = np.meshgrid(u, v)
        return (uu.reshape(-1, 1) * right + vv.reshape(-1, 1) * down + fwd)

    def project(self, points: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) and depths (N,)."""
        right, down, fwd = self.axes()
        rel = points - origin
        z = rel @ fwd
        with np.errstate(divide='ignore', invalid='ignore'):
            px = np.stack([rel @ right / z * self.fx + self.u0,
                           rel @ down / z * self.fy + self.v0], 1)
        return px, z


# A car's camera ring: each camera's name and its yaw from the driving direction (degrees).
CAMERA_RING = {'front': 0.0, 'left': -60.0, 'right': 60.0, 'rear': 180.0, 'front_left': -30.0,
               'front_right': 30.0}


@dataclass(frozen=True)
class SceneConfig:
    """Street layout knobs (metres, counts per 100 m of street)."""

    length_m: float = 240.0
    road_half_width: float = 5.0
    sidewalk_width: float = 3.0
    cars_per_100m: float = 10.0
    people_per_100m: float = 10.0
    poles_every_m: float = 16.0
    trees_per_100m: float = 7.0
    fog_m: float = 220.0            # atmospheric falloff distance
    noise_sigma: float = 4.0        # sensor noise, grey levels


@dataclass
class Primitive:
    kind: str                       # "box" or "ellipsoid"
    lo: np.ndarray                  # box corners / ellipsoid bounding box
    hi: np.ndarray
    label: int
    color: np.ndarray               # base RGB, float
    instance: int = 0               # > 0 for things (cars, people), unique in the scene
    style: str = 'plain'            # texture: plain, building, car, person, foliage, light


@dataclass
class Frame:
    rgb: np.ndarray                 # (H, W, 3) uint8
    depth: np.ndarray               # (H, W) float32 metres, NaN where there is no surface
    disparity: np.ndarray           # (H, W) float32 pixels, NaN where depth is NaN
    labels: np.ndarray              # (H, W) uint8 Cityscapes train ids, 255 = ignore
    instances: np.ndarray           # (H, W) int32, 0 = no thing, else the object's id
    camera: Camera
    position_m: float               # camera Z along the street
    seed: int = 0
    meta: dict = field(default_factory=dict)


class StreetScene:
    """One street, fixed by its seed; render it from any point along it."""

    def __init__(self, seed: int, config: SceneConfig = SceneConfig()):
        self.seed, self.config = seed, config
        self.primitives = _build_street(np.random.default_rng(seed), config)

    def render(self, camera: Camera, position_m: float, lateral_m: float = 0.0,
               noise_seed: int | None = None) -> Frame:
        origin = np.array([lateral_m, camera.height_m, position_m])
        return _render(self, camera, origin, noise_seed)


def render_frame(seed: int, camera: Camera = Camera(),
                 config: SceneConfig = SceneConfig()) -> Frame:
    """Render a single frame from a random street position; deterministic per seed."""
    rng = np.random.default_rng((seed, 1))
    scene = StreetScene(seed, config)
    position = float(rng.uniform(0.0, config.length_m - 120.0))
    lateral = EGO_LANE_X + float(rng.uniform(-0.6, 0.6))
    cam = Camera(**{**camera.__dict__,
                    'pitch_deg': camera.pitch_deg + float(rng.uniform(-1.5, 1.5))})
    frame = scene.render(cam, position, lateral, noise_seed=seed)
    frame.seed = seed
    return frame


def render_sequence(seed: int, n_frames: int, camera: Camera = Camera(),
                    speed_mps: float = 8.0, fps: float = 10.0,
                    config: SceneConfig = SceneConfig()) -> Iterator[Frame]:
    """Render a camera driving down one street: consecutive frames see the same objects."""
    scene = StreetScene(seed, config)
    step = speed_mps / fps
    if step * n_frames > config.length_m - 60.0:
        raise ValueError(f'{n_frames} frames at {speed_mps} m/s, {fps} fps leave the '
                         f'{config.length_m} m street; lower the speed or lengthen the street')
    for i in range(n_frames):
        frame = scene.render(camera, 2.0 + i * step, EGO_LANE_X, noise_seed=seed * 100_003 + i)
        frame.seed = seed
        frame.meta['index'] = i
        frame.meta['stamp_s'] = i / fps
        yield frame


# ----------------------------------------------------------------------------------------
# Scene construction

def _box(x0, x1, y0, y1, z0, z1, label, color, **kw) -> Primitive:
    return Primitive('box', np.array([x0, y0, z0], float), np.array([x1, y1, z1], float),
                     label, np.asarray(color, float), **kw)


def _build_street(rng: np.random.Generator, cfg: SceneConfig) -> list[Primitive]:
    prims: list[Primitive] = []
    road, walk, L = cfg.road_half_width, cfg.sidewalk_width, cfg.length_m
    instance = 0

    # Building blocks on both sides; setbacks leave terrain strips in front of some.
    for side in (-1, 1):
        z = -10.0
        while z < L + 40:
            length = rng.uniform(8, 26)
            setback = road + walk + (rng.uniform(0.5, 4.0) if rng.random() < 0.35 else 0.0)
            height = rng.uniform(7, 26)
            color = rng.uniform(90, 200, 3) * np.array([1.0, 0.95, 0.9])
            x0, x1 = sorted((side * setback, side * (setback + 14)))
            prims.append(_box(x0, x1, 0, height, z, z + length, BUILDING, color,
                              style='building'))
            z += length + (rng.uniform(2, 6) if rng.random() < 0.2 else 0.0)

    # Cars: parked at both kerbs and in the oncoming lane, at every distance along the street.
    # The lane at X = EGO_LANE_X is kept free for the camera's own vehicle.
    for _ in range(int(cfg.cars_per_100m * L / 100)):
        lane_x = rng.choice([-road + 1.1, -EGO_LANE_X, road - 1.1])
        z0 = rng.uniform(4, L)
        w, h, length = rng.uniform(1.7, 1.9), rng.uniform(1.35, 1.6), rng.uniform(3.9, 4.7)
        instance += 1
        prims.append(_box(lane_x - w / 2, lane_x + w / 2, 0, h, z0, z0 + length, CAR,
                          _car_color(rng), instance=instance, style='car'))

    # People on the sidewalks.
    for _ in range(int(cfg.people_per_100m * L / 100)):
        side = rng.choice([-1, 1])
        x = side * rng.uniform(road + 0.6, road + walk - 0.4)
        z0 = rng.uniform(3, L)
        h = rng.uniform(1.55, 1.9)
        instance += 1
        prims.append(_box(x - 0.25, x + 0.25, 0, h, z0, z0 + 0.35, PERSON,
                          rng.uniform(30, 220, 3), instance=instance, style='person'))

    # Poles at the kerb; some carry a sign or a traffic light.
    z = rng.uniform(2, cfg.poles_every_m)
    while z < L:
        side = rng.choice([-1, 1])
        x = side * (road + 0.35)
        h = rng.uniform(4.5, 7.0)
        prims.append(_box(x - 0.08, x + 0.08, 0, h, z, z + 0.16, POLE, (125, 125, 128)))
        r = rng.random()
        if r < 0.35:
            prims.append(_box(x - 0.35, x + 0.35, 2.3, 3.0, z - 0.04, z, SIGN,
                              [(225, 215, 40), (40, 90, 200), (210, 40, 40)][rng.integers(3)]))
        elif r < 0.6:
            xl = x - side * 0.2
            prims.append(_box(xl - 0.16, xl + 0.16, h - 1.0, h - 0.1, z - 0.3, z, LIGHT,
                              (35, 35, 35), style='light'))
        z += cfg.poles_every_m * rng.uniform(0.7, 1.3)

    # Trees: trunk and crown, both vegetation.
    for _ in range(int(cfg.trees_per_100m * L / 100)):
        side = rng.choice([-1, 1])
        x = side * (road + walk - 0.6)
        z0 = rng.uniform(3, L)
        trunk_h, r = rng.uniform(2.0, 3.5), rng.uniform(1.2, 2.4)
        prims.append(_box(x - 0.15, x + 0.15, 0, trunk_h, z0 - 0.15, z0 + 0.15, VEGETATION,
                          (85, 65, 45)))
        c = np.array([x, trunk_h + r * 0.8, z0])
        prims.append(Primitive('ellipsoid', c - [r, r * 0.9, r], c + [r, r * 0.9, r],
                               VEGETATION, rng.uniform([40, 85, 25], [80, 135, 55]),
                               style='foliage'))
    return prims


def _car_color(rng) -> np.ndarray:
    palette = np.array([[20, 20, 25], [200, 200, 205], [120, 122, 128], [150, 20, 25],
                        [25, 45, 120], [230, 230, 225], [60, 80, 60]], float)
    return palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)


# ----------------------------------------------------------------------------------------
# Rendering

def _render(scene: StreetScene, cam: Camera, origin: np.ndarray,
            noise_seed: int | None) -> Frame:
    cfg = scene.config
    h, w = cam.height, cam.width
    dirs = cam.rays()
    n = dirs.shape[0]
    t_best = np.full(n, np.inf)
    owner = np.full(n, -1, np.int32)     # -1 sky, -2 ground, else primitive index

    # Ground plane Y = 0.
    down = dirs[:, 1] < -1e-9
    t_ground = np.where(down, -origin[1] / np.where(down, dirs[:, 1], -1.0), np.inf)
    hit = t_ground < t_best
    t_best[hit], owner[hit] = t_ground[hit], -2

    for i, p in enumerate(scene.primitives):
        idx = _candidate_pixels(cam, origin, p)
        if idx is None:
            continue
        d = dirs[idx]
        t = _intersect(p, origin, d)
        closer = t < t_best[idx]
        sel = idx[closer]
        t_best[sel], owner[sel] = t[closer], i

    labels = np.full(n, SKY, np.uint8)
    instances = np.zeros(n, np.int32)
    color = np.zeros((n, 3))
    valid = np.isfinite(t_best)
    points = origin + dirs * np.where(valid, t_best, 0.0)[:, None]

    ground = owner == -2
    labels[ground], color[ground] = _shade_ground(points[ground], cfg)
    for i in np.unique(owner[owner >= 0]):
        sel = owner == i
        p = scene.primitives[i]
        labels[sel], instances[sel] = p.label, p.instance
        color[sel] = _shade_primitive(p, points[sel], dirs[sel])

    sky = ~valid
    color[sky] = _sky_color(dirs[sky])
    # Aerial perspective: far surfaces fade toward the horizon colour.
    fog = np.exp(-np.where(valid, t_best, 0.0) / cfg.fog_m)[:, None]
    horizon = np.array([175.0, 195.0, 215.0])
    color = np.where(valid[:, None], color * fog + horizon * (1 - fog), color)
    noise = np.random.default_rng(noise_seed).normal(0.0, cfg.noise_sigma, color.shape)
    rgb = np.clip(color + noise, 0, 255).round().astype(np.uint8).reshape(h, w, 3)

    depth = np.where(valid, t_best, np.nan).astype(np.float32).reshape(h, w)
    with np.errstate(divide='ignore', invalid='ignore'):
        disparity = (cam.fx * cam.baseline_m / depth).astype(np.float32)
    return Frame(rgb=rgb, depth=depth, disparity=disparity, labels=labels.reshape(h, w),
                 instances=instances.reshape(h, w), camera=cam, position_m=float(origin[2]))


def _candidate_pixels(cam: Camera, origin: np.ndarray, p: Primitive) -> np.ndarray | None:
    """
    Flat indices of the pixels whose rays can hit `p`: its projected bounding rectangle.

    Culling to that rectangle is what makes per-pixel ray casting affordable.
    """
    corners = np.array([[x, y, z] for x in (p.lo[0], p.hi[0]) for y in (p.lo[1], p.hi[1])
                        for z in (p.lo[2], p.hi[2])])
    px, z = cam.project(corners, origin)
    if np.all(z <= 0.05):
        return None
    if np.any(z <= 0.05):      # straddles the camera plane: fall back to the whole image
        c0, c1, r0, r1 = 0, cam.width, 0, cam.height
    else:
        c0 = max(int(np.floor(px[:, 0].min())), 0)
        c1 = min(int(np.ceil(px[:, 0].max())) + 1, cam.width)
        r0 = max(int(np.floor(px[:, 1].min())), 0)
        r1 = min(int(np.ceil(px[:, 1].max())) + 1, cam.height)
        if c0 >= c1 or r0 >= r1:
            return None
    rows, cols = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing='ij')
    return (rows * cam.width + cols).ravel()


def _intersect(p: Primitive, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit in front of the camera; inf for a miss."""
    if p.kind == 'ellipsoid':
        c, r = (p.lo + p.hi) / 2, (p.hi - p.lo) / 2
        oc, dd = (o - c) / r, d / r
        a = (dd * dd).sum(1)
        b = 2 * (dd @ oc)
        cc = oc @ oc - 1
        disc = b * b - 4 * a * cc
        t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        return np.where((disc >= 0) & (t > 0), t, np.inf)
    safe = np.where(np.abs(d) < 1e-12, 1e-12, d)
    t0, t1 = (p.lo - o) / safe, (p.hi - o) / safe
    t_near = np.minimum(t0, t1).max(1)
    t_far = np.maximum(t0, t1).min(1)
    return np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)


def _value_noise(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """
    Smooth pseudo-random field in [0, 1] over world coordinates.

    Being a function of world coordinates, textures stay put as the camera moves.
    """
    ia, ib = np.floor(a), np.floor(b)
    fa, fb = a - ia, b - ib
    fa, fb = fa * fa * (3 - 2 * fa), fb * fb * (3 - 2 * fb)

    def lattice(x, y):
        v = np.sin(x * 127.1 + y * 311.7 + seed * 74.7) * 43758.5453
        return v - np.floor(v)
    return ((lattice(ia, ib) * (1 - fa) + lattice(ia + 1, ib) * fa) * (1 - fb)
            + (lattice(ia, ib + 1) * (1 - fa) + lattice(ia + 1, ib + 1) * fa) * fb)


def _shade_ground(pts: np.ndarray, cfg: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    x, z = pts[:, 0], pts[:, 2]
    ax = np.abs(x)
    labels = np.where(ax < cfg.road_half_width, ROAD,
                      np.where(ax < cfg.road_half_width + cfg.sidewalk_width, SIDEWALK,
                               TERRAIN)).astype(np.uint8)
    grain = _value_noise(x * 3, z * 3, 1)[:, None]
    color = np.empty((len(x), 3))
    road = labels == ROAD
    color[road] = np.array([82.0, 82.0, 88.0]) * (0.85 + 0.3 * grain[road])
    marking = road & (((ax < 0.08) & (np.mod(z, 6.0) < 3.0))
                      | (np.abs(ax - (cfg.road_half_width - 0.25)) < 0.07))
    color[marking] = (215.0, 215.0, 210.0)
    walk = labels == SIDEWALK
    tiles = ((np.mod(x, 0.6) < 0.04) | (np.mod(z, 0.6) < 0.04))[walk]
    color[walk] = np.array([165.0, 155.0, 150.0]) * (0.9 + 0.15 * grain[walk])
    color[walk] *= np.where(tiles, 0.75, 1.0)[:, None]
    terr = labels == TERRAIN
    color[terr] = np.array([105.0, 140.0, 65.0]) * (0.7 + 0.5 * _value_noise(
        x[terr] * 5, z[terr] * 5, 2)[:, None])
    return labels, color


def _shade_primitive(p: Primitive, pts: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    size = p.hi - p.lo
    local = (pts - p.lo) / size                 # [0, 1]^3 inside the bounding box
    base = np.broadcast_to(p.color, pts.shape).copy()
    if p.kind == 'box':
        # Face lighting from which slab the ray entered: tops bright, street-facing faces
        # mid, faces along the view direction darker.
        dist = np.stack([np.minimum(local[:, k], 1 - local[:, k]) * size[k] for k in range(3)])
        face = dist.argmin(0)
        shade = np.choose(face, [0.78, 1.0, 0.9])
    else:
        normal = (pts - (p.lo + p.hi) / 2) / (size / 2) ** 2
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        shade = 0.55 + 0.45 * np.clip(normal @ np.array([0.3, 0.8, -0.5]), 0, 1)
    y = local[:, 1]
    if p.style == 'building':
        along = np.where(np.abs(local[:, 0] - 0.5) > 0.49, pts[:, 2], pts[:, 0])
        win = ((np.mod(along, 2.6) > 0.7) & (np.mod(pts[:, 1], 3.2) > 1.0)
               & (np.mod(pts[:, 1], 3.2) < 2.6) & (pts[:, 1] > 2.0))
        base[win] = (55.0, 65.0, 85.0)
        base *= (0.85 + 0.25 * _value_noise(along * 2, pts[:, 1] * 2, 3))[:, None]
    elif p.style == 'car':
        base[(y > 0.55) & (y < 0.9)] = (45.0, 55.0, 68.0)
        base[y < 0.22] = (22.0, 22.0, 24.0)
    elif p.style == 'person':
        base[y > 0.87] = (205.0, 165.0, 135.0)
        base[y < 0.48] = p.color[::-1] * 0.6
    elif p.style == 'foliage':
        base *= (0.6 + 0.7 * _value_noise(pts[:, 0] * 4 + pts[:, 2] * 4, pts[:, 1] * 4, 4))[:,
                                                                                            None]
    elif p.style == 'light':
        base[np.abs(y - 0.75) < 0.1] = (230.0, 40.0, 30.0)
    return np.clip(base * np.asarray(shade)[:, None] if np.ndim(shade) else base * shade,
                   0, 255)


def _sky_color(dirs: np.ndarray) -> np.ndarray:
    elevation = np.clip(dirs[:, 1] / np.linalg.norm(dirs, axis=1), 0, 1)[:, None]
    return np.array([170.0, 200.0, 230.0]) * (1 - elevation) + np.array(
        [75.0, 125.0, 200.0]) * elevation


def camera_dict(cam: Camera) -> dict:
    """Describe the camera in the Cityscapes camera-file vocabulary."""
    return {'baseline': cam.baseline_m, 'fx': cam.fx, 'fy': cam.fy, 'u0': cam.u0,
            'v0': cam.v0, 'pitch': float(np.deg2rad(cam.pitch_deg)), 'z': cam.height_m}


def export_cityscapes(root, split: str, seeds, camera: Camera = Camera(),
                      config: SceneConfig = SceneConfig()) -> list[str]:
    """
    Render one frame per seed into a Cityscapes tree (city name "synthetic").

    The Cityscapes loader and cityscapesscripts read it unchanged. Returns the stems written.
    """
    from .cityscapes import write_cityscapes_sample
    stems = []
    for seed in seeds:
        f = render_frame(seed, camera, config)
        stem = f'synthetic/synthetic_{seed:06d}_000019'
        write_cityscapes_sample(root, split, stem, f.rgb, f.labels, f.instances, f.disparity,
                                camera_dict(f.camera))
        stems.append(stem)
    return stems
