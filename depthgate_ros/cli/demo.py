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
depthgate-demo: the perception node on the bundled synthetic street sequence.

Starts `perception_node` in its own process (bundled model unless --checkpoint) and, as the
camera, publishes a synthetic drive at camera size (640x480) over real rclpy topics — RGB
with depth for the first half, RGB only for the second, so the gate falls back from sensor
depth to the network's own monocular depth — with the large-image DDS profile on both sides.
The depth is what a sensor measures (`--sensor`, default the car stereo rig: noise, holes and
a range limit), so the panels show where the hybrid gate takes the network's depth over.
It collects what the node publishes and writes panels, an animated GIF and summary.json
(including the node's own account of every image) to the output folder.

`--cameras N` drives N cameras looking in different directions (front, left, right, rear, ...)
into one node serving them all (its `cameras` parameter): only the front camera has sensor
depth, so each panel row shows its own camera's gate.
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import asdict
import json
import logging
import os
from pathlib import Path
import sys
import tempfile

import numpy as np

from ..data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from ..data.sensors import CHOICES as SENSOR_CHOICES, measure, sensor_by_name
from ..data.synthetic import Camera, CAMERA_RING, render_sequence
from ..metrics import percentiles
from ..model import DepthGatedNet, ModelConfig
from ..model.checkpoint import ModelInfo, save_checkpoint
from ..options import add_arguments, check_args, from_args, PredictorOptions
from ..visualize import colorize_depth, colorize_gate, colorize_labels, palette, panel, write_png
from ..weights import bundled_checkpoint

log = logging.getLogger('depthgate_ros.demo')
MASKS = ('car', 'person')


def _model_path(checkpoint: str | None, scratch: Path) -> tuple[str, str]:
    if checkpoint:
        return checkpoint, checkpoint
    bundled = bundled_checkpoint()
    if bundled is not None:
        return str(bundled), 'bundled'
    log.warning('no bundled model in this build and no --checkpoint: running an UNTRAINED '
                'network; the pictures show the pipeline, not accuracy')
    model = DepthGatedNet(ModelConfig(channels=64, depth_channels=(32, 16)))
    path = save_checkpoint(scratch / 'untrained.pt', model,
                           ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS))
    return str(path), 'untrained (random initialisation)'


def trained_size(model_path: str) -> tuple[int, int] | None:
    """
    Return the size of the renders the model was trained on (from its provenance), if any.

    A CNN's notion of near and far is in pixels, so the demo runs the node at that size. A
    model trained on frames from disk (data.image_size is the renderer's, unused) runs at the
    camera's.
    """
    from ..model.checkpoint import read_checkpoint
    try:
        data = read_checkpoint(model_path)['info']['provenance']['config']['data']
        if data['dataset'] != 'synthetic':
            return None
        size = data['image_size']
        return int(size[0]), int(size[1])
    except (KeyError, TypeError, IndexError, ValueError):
        return None


def run_demo(out: Path, frames: int, seed: int, size: tuple[int, int], rate_hz: float,
             checkpoint: str | None, options: PredictorOptions = PredictorOptions(),
             dds_profile: bool = True, sensor: str = 'stereo', cameras: int = 1) -> dict:
    """
    Drive the node through a synthetic street; write panels, a GIF and summary.json.

    `cameras` > 1: that many cameras of CAMERA_RING, served by one node.
    """
    # The node in its own process, as `ros2 launch` starts it; this process is the camera.
    # The large-image DDS profile (both sides) carries camera-sized images in shared memory.
    # Fast DDS reads it when this process first uses DDS: call this from a fresh process.
    from ..tools import dds
    env = dds.ros_environment(profile=dds_profile)
    if dds_profile:
        os.environ[dds.PROFILE_VARIABLE] = env[dds.PROFILE_VARIABLE]
    else:
        os.environ.pop(dds.PROFILE_VARIABLE, None)
    # one unnamed camera as the node's default, else named cameras of the ring
    names = ('',) if cameras == 1 else tuple(CAMERA_RING)[:cameras]
    drives = {name: _Drive(seed, frames, size, sensor, CAMERA_RING[name or 'front'],
                           with_depth=i == 0) for i, name in enumerate(names)}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        model_path, model_name = _model_path(checkpoint, Path(scratch))
        sessions, inference_size = _run_node(drives, model_path, options, rate_hz, env)
    if cameras == 1:
        per_frame, latencies = _draw(drives[''], sessions[''], out, rate_hz)
        accounts = {'': _account(drives[''], sessions[''], per_frame, latencies, rate_hz)}
    else:
        per_frame, accounts = _draw_ring(drives, sessions, out, rate_hz)
    first = accounts[names[0]]
    every_latency = [v for a in accounts.values() for v in a['latencies']]
    summary = {
        'model': model_name, 'model_path': model_path,
        'device': sessions[names[0]].status.get('device', '?'),
        'dds_profile': env.get(dds.PROFILE_VARIABLE, 'none (Fast DDS defaults)'),
        **{k: sum(a[k] for a in accounts.values()) for k in (
            'frames_sent', 'frames_processed', 'frames_dropped')},
        'node_accounting': {k: sum(a['node_accounting'].get(k, 0) for a in accounts.values())
                            for k in first['node_accounting']},
        'publish_rate_hz': rate_hz,
        'image_size': list(size),
        'inference_size': list(inference_size),
        'fps': sum(a['fps'] for a in accounts.values()),
        'latency_ms': _latency(every_latency),
        'sensor': sensor,
        'gate_sources': dict(sum((Counter(a['gate_sources']) for a in accounts.values()),
                                 Counter())),
        'per_frame': per_frame,
    }
    if cameras > 1:
        summary['cameras'] = {name: {k: v for k, v in a.items() if k != 'latencies'}
                              for name, a in accounts.items()}
    tmp = out / 'summary.json.tmp'
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / 'summary.json')
    return summary


def _account(drive: '_Drive', session, per_frame: list[dict], latencies: list[float],
             rate_hz: float) -> dict:
    """One camera's figures: frames sent and processed, the node's account, gates, latency."""
    processed = [e for e in per_frame if e['processed']]
    status, sent = session.status, len(drive.camera)
    counts = ('received', 'processed', 'replaced', 'lost_in_transport', 'missed_by_stamps',
              'dropped')
    return {'frames_sent': sent, 'frames_processed': len(processed),
            # sent but never output: the node's own account (/diagnostics) says where they went
            'frames_dropped': sent - len(processed),
            'node_accounting': {k: int(status[k]) for k in counts if k in status},
            'fps': len(processed) / (sent / rate_hz) if sent else 0.0,
            'latency_ms': _latency(latencies),
            'latencies': latencies,
            'gate_sources': dict(Counter(e['gate_source'] for e in processed))}


def _latency(values: list[float]) -> dict:
    return percentiles(np.array(values) if values else np.array([np.nan]))


class _Drive:
    """
    One camera's synthetic drive: rendered frames, with sensor depth for the first half only.

    `yaw_deg`: where the camera looks, from the driving direction; `with_depth`: False for a
    camera without a depth sensor.
    """

    def __init__(self, seed: int, frames: int, size: tuple[int, int], sensor: str,
                 yaw_deg: float = 0.0, with_depth: bool = True):
        from ..tools.player import CameraFrame
        h, w = size
        f = 560.0 * w / 512
        cam = Camera(width=w, height=h, fx=f, fy=f, yaw_deg=yaw_deg)
        self.sequence = list(render_sequence(seed, frames, cam))
        self.half = (frames + 1) // 2 if with_depth else 0
        self.sensor, self.width = sensor, w
        device_model = sensor_by_name(sensor)
        self.measured = [measure(device_model, fr.depth, cam.fx,
                                 np.random.default_rng((seed, i)), fr.rgb)
                         for i, fr in enumerate(self.sequence[:self.half])]
        # sensor depth for the first half of the drive only: the gate source must switch
        self.camera = [CameraFrame(1_700_000_000 * 10 ** 9 + int(fr.meta['stamp_s'] * 1e9),
                                   fr.rgb, self.measured[i] if i < self.half else None,
                                   cam.k_matrix())
                       for i, fr in enumerate(self.sequence)]


def _run_node(drives: dict[str, _Drive], model_path: str, options: PredictorOptions,
              rate_hz: float, env: dict):
    """Start the node, play the drives to it, stop it; return the sessions, inference size."""
    from ..tools.node_process import NodeProcess
    from ..tools.player import play_cameras
    outputs = ('labels', 'depth', 'gate') + tuple(f'masks/{m}' for m in MASKS)
    # the Predictor options are the node's parameters of the same names
    params = {**asdict(options), 'model_path': model_path, 'mask_classes': list(MASKS),
              'depth_timeout': max(0.3, 1.5 / rate_hz), 'diagnostics_period': 0.5}
    # the camera's own size said explicitly, so that the node compiles its network in
    # configure (option `compile`) rather than while the drive plays
    camera = next(iter(drives.values())).sequence[0].rgb.shape[:2]
    inference_size = (options.inference_height, options.inference_width) if \
        options.inference_height else trained_size(model_path) or camera
    params.update(inference_height=inference_size[0], inference_width=inference_size[1])
    if list(drives) != ['']:
        params['cameras'] = list(drives)
    node = NodeProcess(params, env, log_level='warn').start()
    try:
        sessions = play_cameras({name: d.camera for name, d in drives.items()}, rate_hz, node,
                                outputs)
    finally:
        node.stop()
    if node.returncode != 0:
        log.warning('perception_node exited with %s:\n%s', node.returncode, node.log)
    return sessions, inference_size


def _draw(drive: _Drive, session, out: Path, rate_hz: float) -> tuple[list[dict], list[float]]:
    """Write a panel per processed frame and the GIF; return per-frame entries and latencies."""
    received, lut = session.outputs, palette(CITYSCAPES_COLORS)
    per_frame, pictures, latencies = [], [], []
    for i, (cam, fr) in enumerate(zip(drive.camera, drive.sequence)):
        key = cam.stamp_ns
        values = session.frame_info.get(key)
        entry = {'index': i, 'stamp_ns': key, 'sensor_depth_sent': i < drive.half,
                 'processed': values is not None}
        per_frame.append(entry)
        if values is None or key not in received['labels']:
            continue
        latency = (received['labels'][key][0] - session.sent[key]) * 1e3
        latencies.append(latency)
        entry.update(gate_source=values['gate_source'], loops=int(values['loops']),
                     model_ms=float(values['model_ms']), latency_ms=round(latency, 2))
        images = [fr.rgb, colorize_labels(received['labels'][key][1], lut, fr.rgb, 0.25),
                  colorize_depth(received['depth'][key][1])]
        titles = ['image', 'labels', 'depth (network)']
        if i < drive.half:                  # what the gate was given; its holes are white
            images.append(colorize_depth(drive.measured[i]))
            titles.append(f'sensor depth ({drive.sensor})')
        if key in received['gate']:
            images.append(colorize_gate(received['gate'][key][1]))
            titles.append(f"gate ({values['gate_source']})")
        for m in MASKS:
            if key in received[f'masks/{m}']:
                images.append(received[f'masks/{m}'][key][1])
                titles.append(f'mask: {m}')
        pictures.append(panel(images, titles, width=min(drive.width, 320)))
        entry['panel'] = f'frame_{i:04d}.png'
        write_png(out / entry['panel'], pictures[-1])
    _write_gif(out, pictures, rate_hz)
    return per_frame, latencies


def _draw_ring(drives: dict[str, _Drive], sessions: dict, out: Path,
               rate_hz: float) -> tuple[list[dict], dict[str, dict]]:
    """
    Write a panel per moment, a row per camera (image, labels, depth, gate), and the GIF.

    Returns per-frame entries (one per camera and moment) and each camera's account.
    """
    lut = palette(CITYSCAPES_COLORS)
    per_frame, pictures, accounts = [], [], {}
    width = min(next(iter(drives.values())).width, 240)
    entries = {name: [] for name in drives}
    latencies = {name: [] for name in drives}
    for i in range(len(next(iter(drives.values())).camera)):
        rows = []
        for name, drive in drives.items():
            session, cam, fr = sessions[name], drive.camera[i], drive.sequence[i]
            values, got = session.frame_info.get(cam.stamp_ns), session.outputs
            entry = {'camera': name, 'index': i, 'stamp_ns': cam.stamp_ns,
                     'sensor_depth_sent': i < drive.half, 'processed': values is not None}
            entries[name].append(entry)
            images = [fr.rgb] + [np.full_like(fr.rgb, 255)] * 3
            titles = [f'{name}: image', 'labels: not processed', '', '']
            if values is not None and cam.stamp_ns in got['labels']:
                latency = (got['labels'][cam.stamp_ns][0] - session.sent[cam.stamp_ns]) * 1e3
                latencies[name].append(latency)
                entry.update(gate_source=values['gate_source'], batch=int(values['batch']),
                             model_ms=float(values['model_ms']), latency_ms=round(latency, 2))
                images[1:3] = [colorize_labels(got['labels'][cam.stamp_ns][1], lut, fr.rgb,
                                               0.25),
                               colorize_depth(got['depth'][cam.stamp_ns][1])]
                titles[1:3] = ['labels', 'depth (network)']
                if cam.stamp_ns in got['gate']:
                    images[3] = colorize_gate(got['gate'][cam.stamp_ns][1])
                    titles[3] = f"gate ({values['gate_source']})"
            rows.append(panel(images, titles, width=width))
        pictures.append(np.concatenate(rows, 0))
        write_png(out / f'frame_{i:04d}.png', pictures[-1])
        for name in drives:
            entries[name][-1]['panel'] = f'frame_{i:04d}.png'
    for name, drive in drives.items():
        per_frame += entries[name]
        accounts[name] = _account(drive, sessions[name], entries[name], latencies[name],
                                  rate_hz)
    _write_gif(out, pictures, rate_hz)
    return per_frame, accounts


def _write_gif(out: Path, pictures: list[np.ndarray], rate_hz: float) -> None:
    if pictures:
        from PIL import Image as PILImage
        gif = [PILImage.fromarray(p) for p in pictures]
        gif[0].save(out / 'sequence.gif', save_all=True, append_images=gif[1:],
                    duration=int(1000 / rate_hz), loop=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-demo',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('--out', default='demo_output',
                        help='output folder (default: %(default)s)')
    parser.add_argument('--checkpoint', help='model file (default: the bundled model)')
    parser.add_argument('--frames', type=int, default=12)
    parser.add_argument('--seed', type=int, default=7, help='street seed')
    parser.add_argument('--size', type=int, nargs=2, default=[480, 640], metavar=('H', 'W'),
                        help='camera image size (default: %(default)s)')
    parser.add_argument('--rate', type=float, default=2.0, help='publish rate, Hz')
    parser.add_argument('--sensor', default='stereo', choices=SENSOR_CHOICES,
                        help='the depth sensor the camera side simulates (exact: the render)')
    parser.add_argument('--cameras', type=int, default=1, choices=range(1, len(CAMERA_RING) + 1),
                        metavar='N', help='cameras looking in different directions, served '
                        f"by one node: {', '.join(CAMERA_RING)} (default: %(default)s)")
    parser.add_argument('--no-dds-profile', action='store_true',
                        help='Fast DDS defaults instead of the large-image profile: shows how '
                        'camera-sized best-effort images are lost between processes')
    add_arguments(parser, PredictorOptions)
    args = parser.parse_args(argv)
    check_args(parser, args, PredictorOptions)
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(name)s: %(message)s')
    if args.frames < 2 or args.rate <= 0:
        parser.error('--frames must be >= 2 and --rate > 0')
    options = from_args(PredictorOptions, args)
    s = run_demo(Path(args.out), args.frames, args.seed, tuple(args.size), args.rate,
                 args.checkpoint, options, dds_profile=not args.no_dds_profile,
                 sensor=args.sensor, cameras=args.cameras)
    acc = s['node_accounting']
    print(f"{s['frames_processed']}/{s['frames_sent']} frames processed (node: received "
          f"{acc.get('received')}, lost in transport {acc.get('lost_in_transport')}), gate "
          f"sources {s['gate_sources']}, latency p50 {s['latency_ms']['p50']:.0f} ms; panels, "
          f"sequence.gif and summary.json in {args.out}/ (model: {s['model']})")
    return 0 if s['frames_processed'] else 1


if __name__ == '__main__':
    sys.exit(main())
