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
Numbers and pictures from a rosbag2 recording (the work of depthgate-bag-eval, cli/bag_eval.py).

Offline (default): the node's Predictor on every image, depth paired as the node pairs it
(same module, same slop and timeout): segmentation metrics per loop against a label topic,
monocular depth metrics against the bag's own sensor depth, agreement between sensor-gated and
predicted-gated labels, latency. Realtime: the bag's messages are published over rclpy at the
recorded rate into a running perception node, and end-to-end latency, output rate and drops
are measured as a ROS user would with `ros2 bag play`.

A recording of several cameras is evaluated per camera (`cameras`: name -> that camera's
topics): offline, each camera on its own; realtime, all played together into one node that
serves them (its `cameras` parameter), each camera's outputs under the node's `<name>/`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
from pathlib import Path
import time

import numpy as np

from .bags import (BagError, BagWriter, depth_kind, header, IMAGE, image_msg, OUTPUT_QOS,
                   read_topics, Topics, TYPESTORE)
from ..frames import Frame, FramePipeline, FrameSettings
from ..inference import Predictor
from ..metrics import DepthMetric, percentiles, SegmentationMetric
from ..node.image_codec import (camera_focal, decode_partner, decode_rgb, image_to_array,
                                ImageDecodeError)
from ..options import PairingOptions
from ..pairing import DepthPairing, NS, stamp_ns
from ..visualize import colorize_depth, colorize_gate, colorize_labels, panel, write_png

# What --write-bag records, under /depthgate/<name>.
BAG_OUTPUTS = ('labels', 'labels_color', 'depth')


@dataclass(frozen=True)
class Window:
    """Which images to evaluate: seconds from the recording's start, and every Nth of them."""

    start_s: float = 0.0
    duration_s: float | None = None
    every: int = 1

    def bounds(self, bag_start_ns: int) -> tuple[int, int | None]:
        start = bag_start_ns + round(self.start_s * NS)
        return start, None if self.duration_s is None else start + round(self.duration_s * NS)


def offline(reader, topics: Topics, predictor: Predictor, work: Path, **options) -> dict:
    """Evaluate a recording frame by frame (OfflineEvaluation); return the report."""
    return OfflineEvaluation(reader, topics, predictor, work, **options).run()


class OfflineEvaluation:
    """
    One pass over a recording, as the node would see it, at no particular speed.

    Each image in the window is paired with depth (and labels) exactly as the live node pairs
    them, run through the FramePipeline, scored per loop against the labels, compared with a
    monocular run where depth was paired, drawn into a few panels and, with `out_bag`,
    recorded.
    """

    def __init__(self, reader, topics: Topics, predictor: Predictor, work: Path, *,
                 pairing: PairingOptions, panels: int, out_bag: Path | None, storage: str,
                 max_depth: float | None = None, window: Window = Window()):
        self.reader, self.topics, self.work, self.window = reader, topics, work, window
        self.panels, self.out_bag, self.storage = panels, out_bag, storage
        self.names, self.loops = predictor.info.class_names, predictor.loops
        self.slop, self.timeout = pairing.sync_slop, pairing.depth_timeout
        self.pipeline = FramePipeline(predictor, decode_partner, sync_slop=self.slop,
                                      depth_timeout=self.timeout, queue_size=64)
        self.settings = FrameSettings(gate=predictor.gate,
                                      depth_unit_scale=pairing.depth_unit_scale,
                                      outputs=frozenset(BAG_OUTPUTS))
        self.monocular = FrameSettings(gate='predicted', outputs=frozenset())
        self.labels = DepthPairing(self.slop, self.timeout, queue_size=64)
        # scores
        self.seg = [SegmentationMetric(len(self.names)) for _ in range(self.loops + 1)]
        self.mono_depth = DepthMetric(max_depth)
        self.agree_pixels = self.agree_total = 0
        self.latencies: list[float] = []
        self.skipped: dict[str, int] = {}
        self.evaluated = self.with_depth = self.drawn = self.in_window = 0
        self.camera_info = None             # the latest CameraInfo: the camera's focal length
        self.writer: BagWriter | None = None
        self.n_images = next(c.msgcount for c in reader.connections if c.topic == topics.image)

    def run(self) -> dict:
        (self.work / 'panels').mkdir(parents=True)
        if self.out_bag is not None:
            self.writer = BagWriter(self.out_bag, self.storage)
            for name in BAG_OUTPUTS:
                self.writer.add(f'/depthgate/{name}', IMAGE, OUTPUT_QOS)
        try:
            self._read()
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.report()

    def _read(self) -> None:
        """Read the window (and a pairing margin around it) in recording order."""
        topics = self.topics
        depth_topic = topics.depth or topics.disparity
        kind = depth_kind(self.reader, topics)
        wanted = [x for x in (topics.image, depth_topic, topics.labels, topics.camera_info) if x]
        first, last = self.window.bounds(self.reader.start_time)
        # read from a depth timeout before the window (partners recorded just ahead of its
        # first image) to one after it; the rest of the recording is never read
        margin = self.pipeline.pairing_window_ns
        pending: deque = deque()
        for topic, log_ns, msg in read_topics(self.reader, wanted, start=first - margin,
                                              stop=None if last is None else last + margin):
            if topic == topics.image:
                if first <= log_ns and (last is None or log_ns < last):
                    if self.in_window % self.window.every == 0:
                        pending.append((log_ns, msg))
                    self.in_window += 1
            elif topic == depth_topic:
                self.pipeline.add_depth(stamp_ns(msg), (kind, msg), log_ns)
            elif topic == topics.labels:
                self.labels.add(stamp_ns(msg), msg, log_ns)
            elif topic == topics.camera_info:
                self.camera_info = msg
            # An image is complete once the recording has moved depth_timeout past it: a
            # partner recorded later than that would also reach the live node too late.
            while pending and log_ns - pending[0][0] > self.pipeline.depth_timeout_ns:
                self._process(*pending.popleft())
        while pending:
            self._process(*pending.popleft())

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _process(self, log_ns: int, msg) -> None:
        """Pair, predict, score, draw and record one image."""
        try:
            rgb = np.ascontiguousarray(decode_rgb(msg))
        except ImageDecodeError as e:
            self._skip(f'image: {e}')
            return
        t = stamp_ns(msg)
        pipeline = self.pipeline
        partner = pipeline.partner(t) if pipeline.wants_depth(self.settings.gate) else None
        gt = None
        if self.topics.labels:
            lab = self.labels.match(t)
            if lab is None:
                self._skip('no label message within the slop')
            else:
                gt = image_to_array(lab.item)
        focal = camera_focal(self.camera_info, rgb.shape[1])
        frame = pipeline.run(rgb, self.settings, partner=partner and partner.item,
                             focal_px=focal, every_loop=True)
        if frame.depth_error:
            self._skip(f'depth: {frame.depth_error}')
        self.latencies.append(frame.seconds['model_s'])
        self.evaluated += 1
        self._score(frame, gt, focal)
        self._draw(frame, gt)
        if self.writer is not None:
            hdr = header(t, msg.header.frame_id)
            for name, (array, encoding) in pipeline.images(frame, self.settings).items():
                self.writer.write(f'/depthgate/{name}', log_ns, image_msg(array, encoding, hdr))

    def _score(self, frame: Frame, gt: np.ndarray | None, focal: float | None) -> None:
        """Score each loop against the labels; where depth was paired, the monocular run too."""
        preds = frame.predictions
        if gt is not None:
            for loop, p in enumerate(preds):
                self.seg[loop].update(p.labels, gt)
        if frame.sensor_depth is not None:
            self.with_depth += 1
            mono = self.pipeline.run(frame.rgb, self.monocular, focal_px=focal).prediction
            self.mono_depth.update(mono.depth, frame.sensor_depth)
            self.agree_pixels += int((mono.labels == preds[-1].labels).sum())
            self.agree_total += mono.labels.size

    def _draw(self, frame: Frame, gt: np.ndarray | None) -> None:
        """Draw a panel for every Nth frame, spread over the recording."""
        every = max(1, self.n_images // max(1, self.panels))
        if self.drawn >= self.panels or (self.evaluated - 1) % every:
            return
        self.drawn += 1
        final, rgb, lut = frame.prediction, frame.rgb, self.pipeline.lut
        pics = [rgb, colorize_labels(final.labels, lut, rgb, 0.3), colorize_depth(final.depth)]
        titles = ['image', f'labels ({final.gate_source})', 'predicted depth']
        if gt is not None:
            pics.insert(1, colorize_labels(gt, lut))
            titles.insert(1, 'ground truth')
        if final.gate is not None:
            pics.append(colorize_gate(final.gate))
            titles.append('gate')
        write_png(self.work / 'panels' / f'frame_{self.evaluated - 1:05d}.png',
                  panel(pics, titles, width=256))

    def report(self) -> dict:
        if self.evaluated == 0:
            raise BagError(f'no frame of {self.topics.image} could be evaluated: '
                           f'{self.skipped}')
        lat = np.array(self.latencies) * 1e3
        report = {'mode': 'offline', 'frames_in_bag': self.n_images,
                  'frames_in_window': self.in_window, 'window': vars(self.window),
                  'frames_evaluated': self.evaluated,
                  'frames_with_sensor_depth': self.with_depth, 'skipped': self.skipped,
                  'topics': vars(self.topics), 'sync_slop_s': self.slop,
                  'depth_timeout_s': self.timeout, 'latency_ms': percentiles(lat),
                  'latencies_ms': lat.tolist()}
        if self.topics.labels:
            for loop in range(self.loops + 1):
                s = self.seg[loop].compute()
                report[f'loop{loop}'] = {'miou': s['miou'],
                                         'pixel_accuracy': s['pixel_accuracy'],
                                         'iou': dict(zip(self.names, s['iou']))}
        if self.with_depth:
            report['monocular_depth'] = self.mono_depth.compute()
            report['sensor_vs_predicted_gate_agreement'] = self.agree_pixels / self.agree_total
        return report


def offline_cameras(reader, cameras: dict[str, Topics], predictor: Predictor, work: Path,
                    out_bag: Path | None, **options) -> dict:
    """Evaluate each camera of a ring on its own; its panels and outputs under its name."""
    reports = {name: offline(reader, topics, predictor, work / name,
                             out_bag=out_bag / name if out_bag else None, **options)
               for name, topics in cameras.items()}
    return combined('offline', reports)


def combined(mode: str, reports: dict[str, dict]) -> dict:
    """One report over several cameras': each camera's, and the latencies of all."""
    lat = [x for r in reports.values() for x in r['latencies_ms']]
    return {'mode': mode, 'cameras': reports, 'latency_ms': percentiles(np.array(lat)),
            'latencies_ms': lat}


def realtime(reader, cameras: dict[str, Topics], *, rate: float, node_name: str,
             wait_s: float) -> dict:
    """
    Publish the bag over rclpy at the recorded rate (x `rate`) into a running node.

    Messages go out as ROS 2 CDR: a ROS 1 recording's are converted (bags.to_ros2) first.
    `cameras`: name -> topics; the unnamed camera '' alone is a single-camera node's.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from stereo_msgs.msg import DisparityImage

    from .player import Player
    types = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CameraInfo': CameraInfo,
             'sensor_msgs/msg/CompressedImage': CompressedImage,
             'stereo_msgs/msg/DisparityImage': DisparityImage}
    from ..node.perception import prefix
    play = [t for topics in cameras.values() for t in (
        topics.image, topics.depth, topics.disparity, topics.camera_info) if t]
    msgtypes = {c.topic: c.msgtype for c in reader.connections}
    images = {topics.image: name for name, topics in cameras.items()}
    outputs = {name: f'{node_name}/{prefix(name)}frame_info' for name in cameras}
    sent: dict[str, dict[int, float]] = {name: {} for name in cameras}
    with Player('depthgate_bag_player') as player:
        for topic in outputs.values():
            player.collect(DiagnosticArray, topic, depth=100)
        pubs = {t: player.publisher(types[msgtypes[t]], t, depth=5) for t in play}
        for image in images:
            try:
                player.wait_for_subscribers(pubs[image])
            except TimeoutError:
                raise BagError(f'no subscriber on {image}: is the perception node running '
                               f'and remapped to it (node {node_name})?') from None
        time.sleep(0.3)
        t_bag0 = t_wall0 = None
        for topic, log_ns, msg in read_topics(reader, play):
            cdr = bytes(TYPESTORE.serialize_cdr(msg, msgtypes[topic]))
            if t_bag0 is None:
                t_bag0, t_wall0 = log_ns, time.monotonic()
            delay = t_wall0 + (log_ns - t_bag0) / NS / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if topic in images:
                sent[images[topic]][stamp_ns(msg)] = time.monotonic()
            pubs[topic].publish(cdr)                # serialized: rclpy sends it as it is
        player.wait_for(lambda: all(len(player.by_stamp(outputs[n])) >= len(sent[n])
                                    for n in cameras), timeout=wait_s, period=0.05)
        received = {n: player.by_stamp(outputs[n]) for n in cameras}
    reports = {n: _played(sent[n], received[n], rate, cameras[n]) for n in cameras}
    return reports[''] if list(cameras) == [''] else combined('realtime', reports)


def _played(sent: dict[int, float], received: dict, rate: float, topics: Topics) -> dict:
    """One camera's realtime figures: what was sent, what came out and when."""
    got = {k: received[k][0] for k in sent if k in received}
    lat = np.array([(got[k] - sent[k]) * 1e3 for k in sorted(got)])
    duration = (max(sent.values()) - min(sent.values())) if len(sent) > 1 else 0.0
    return {'mode': 'realtime', 'rate': rate, 'frames_sent': len(sent),
            'frames_received': len(got), 'frames_dropped': len(sent) - len(got),
            'output_rate_hz': len(got) / duration if duration else math.nan,
            'input_rate_hz': (len(sent) - 1) / duration if duration else math.nan,
            'latency_ms': percentiles(lat), 'latencies_ms': lat.tolist(),
            'topics': vars(topics)}


def write_markdown(report: dict, path: Path) -> None:
    lines = [f"# Bag evaluation ({report['mode']})", '']
    for name, r in report.get('cameras', {'': report}).items():
        lines += ([f'## Camera {name}', ''] if name else []) + _camera_lines(r)
    lat = report['latency_ms']
    lines.append(f"Latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms "
                 f"({'model only' if report['mode'] == 'offline' else 'publish to output'}"
                 f"{', every camera' if 'cameras' in report else ''}).")
    lines.append('\n![latency histogram](latency_histogram.png)\n')
    path.write_text('\n'.join(lines))


def _camera_lines(report: dict) -> list[str]:
    """Markdown lines of one camera's report."""
    if report['mode'] != 'offline':
        return [f"Frames sent {report['frames_sent']}, received {report['frames_received']}, "
                f"dropped {report['frames_dropped']}; input {report['input_rate_hz']:.1f} Hz, "
                f"output {report['output_rate_hz']:.1f} Hz.", '']
    lines = [f"Frames: {report['frames_evaluated']} of {report['frames_in_bag']} "
             f"evaluated, {report['frames_with_sensor_depth']} with sensor depth; "
             f"skipped: {report['skipped'] or 'none'}.", '']
    loops = sorted(k for k in report if k.startswith('loop'))
    if loops:
        lines += ['| output | mIoU | pixel acc. |', '|---|---|---|']
        lines += [f"| {k} | {report[k]['miou']:.3f} | {report[k]['pixel_accuracy']:.3f} |"
                  for k in loops]
        lines.append('')
    if 'monocular_depth' in report:
        d = report['monocular_depth']
        lines += [f"Monocular depth against the bag's sensor depth: delta1 "
                  f"{d['delta1']:.3f}, AbsRel {d['abs_rel']:.3f}, RMSE {d['rmse']:.2f} m.",
                  f'Labels with vs without sensor depth, agreement: '
                  f"{report['sensor_vs_predicted_gate_agreement']:.3f}.", '']
    return lines


def latency_histogram(lat_ms: list[float], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.hist(lat_ms or [0.0], bins=min(30, max(5, len(lat_ms) // 2)), color='#4575b4')
    ax.set_xlabel('latency (ms)')
    ax.set_ylabel('frames')
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
