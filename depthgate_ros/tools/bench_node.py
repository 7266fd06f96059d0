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
The ROS half of depthgate-bench: what crosses DDS between processes, and the node under it.

- transport: camera_probe camera -> camera_probe listen, no node: delivered/sent per image
  size x QoS x the large-image profile.
- node: perception_node in its own process fed by camera_probe at camera sizes: per-stage
  times one frame at a time, then 3x overload, with the node's own account of every image.
- soak: the node for minutes at 5 Hz 640x480 with depth: RSS over time, errors, and
  whether every image sent is accounted for.
- cameras: a ring of cameras at a rate beyond the model's, served by one node (`cameras`)
  and by a node per camera: RSS, frames/s, per-camera counts and latencies.
This process only listens (small messages), so a DDS profile applies to exactly the camera
and the node, as on a robot.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
import re
import threading
import time

import numpy as np

from . import camera_probe
from .dds import ros_environment
from .node_process import node_status, NodeProcess
from .player import Player
from ..data.synthetic import CAMERA_RING
from ..metrics import percentiles
from ..node.perception import ROLES
from ..pairing import stamp_ns

COUNTS = ('received', 'processed', 'replaced', 'failed', 'lost_in_transport',
          'missed_by_stamps', 'dropped', 'errors')


def bench_transport(sizes, reliabilities, profiles, count: int, rate: float) -> list[dict]:
    rows = []
    for (h, w), reliability, profile in itertools.product(sizes, reliabilities, profiles):
        env = ros_environment(profile=profile)
        seconds = count / rate + 12
        listener = camera_probe.start('listen', env, reliability=reliability, seconds=seconds)
        cam = camera_probe.start('camera', env, size=(h, w), rate=rate, count=count,
                                 reliability=reliability)
        sent, got = camera_probe.result(cam), camera_probe.result(listener)
        rows.append({'size': f'{w}x{h}', 'mb': round(h * w * 3 / 1e6, 2),
                     'reliability': reliability, 'profile': 'large_images' if profile
                     else 'Fast DDS default', 'sent': sent['sent'],
                     'delivered': got['received'], 'reported_lost': got['lost']})
    return rows


class _Listener:
    """Records ~/frame_info and /diagnostics of perception_node (a Player in this process)."""

    def __init__(self, frame_topics: tuple[str, ...] = ('/perception_node/frame_info',)):
        from diagnostic_msgs.msg import DiagnosticArray
        self.player = Player('depthgate_bench_listener')   # the domain ros_environment gives
        # per topic: stamp ns -> (arrival, info)
        self.frames_of: dict[str, dict[int, tuple[int, dict]]] = {t: {} for t in frame_topics}
        self.frames = self.frames_of[frame_topics[0]]
        self.status: dict[str, str] = {}
        self._lock = threading.Lock()
        for topic in frame_topics:
            self.player.collect(DiagnosticArray, topic, depth=100, keep=False,
                                on_message=lambda m, t=topic: self._on_frame(t, m))
        self.player.collect(DiagnosticArray, '/diagnostics', depth=10,
                            on_message=self._on_diag, keep=False)

    def _on_frame(self, topic, msg):
        stamp = stamp_ns(msg)
        with self._lock:
            self.frames_of[topic][stamp] = (time.time_ns(), {kv.key: kv.value
                                                             for kv in msg.status[0].values})

    def _on_diag(self, msg):
        if (status := node_status(msg)) is not None:
            with self._lock:
                self.status = status

    def counts(self) -> dict:
        with self._lock:
            return {k: int(self.status[k]) for k in COUNTS if k in self.status}

    def close(self):
        self.player.close()


def _wait_for_node(listener: _Listener, node: NodeProcess, timeout: float = 120.0) -> None:
    """
    Wait for the node's /diagnostics and for its frame-info publishers.

    Discovery matches each topic on its own: /diagnostics arriving does not mean a frame's
    info will, and a frame whose info is lost is missing from the timings.
    """
    end = time.monotonic() + timeout
    peer = listener.player.peer
    while not (listener.counts() and all(peer.count_publishers(t) >= 1
                                         for t in listener.frames_of)):
        if not node.running() or time.monotonic() > end:
            raise RuntimeError('no /diagnostics or frame info from perception_node:\n'
                               + node.log)
        time.sleep(0.1)


def _settled(listener: _Listener, timeout: float = 30.0) -> dict:
    """Return the node's counts once everything it received is processed, replaced or failed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c = listener.counts()
        if c and c['received'] == c['processed'] + c['replaced'] + c['failed']:
            break
        time.sleep(0.2)
    time.sleep(1.2)                                       # one more /diagnostics period
    return listener.counts()


def _delta(after: dict, before: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def bench_node(model_path: str, inference_size, image_size, profile: bool, threads: int,
               frames: int, overload_s: float, confidence: bool = False) -> dict:
    env = ros_environment(profile=profile)
    params = {'model_path': model_path, 'device': 'cpu', 'num_threads': threads,
              'inference_height': inference_size[0], 'inference_width': inference_size[1],
              'publish_points': False, 'publish_confidence': confidence,
              'diagnostics_period': 0.5}
    listener = _Listener()
    node = NodeProcess(params, env, log_level='warn').start()
    try:
        _wait_for_node(listener, node)
        h, w = image_size
        # two frames warm the caches, and are settled before any is timed: a slow first
        # frame on a busy machine would otherwise make the next one wait or be replaced
        camera_probe.result(camera_probe.start(
            'camera', env, size=(h, w), rate=1.0, count=2, wall_stamps=True))
        _settled(listener)
        # one frame at a time: a slow camera, so nothing queues and stages add up
        before = listener.counts()
        with listener._lock:
            listener.frames.clear()
        sent = camera_probe.result(camera_probe.start(
            'camera', env, size=(h, w), rate=1.0, count=frames, wall_stamps=True))
        single = _delta(_settled(listener), before)
        with listener._lock:
            got = dict(listener.frames)
        ones = sorted(got)
        stages = {k: [float(got[t][1][k]) for t in ones] for k in
                  ('decode_ms', 'model_ms', 'publish_ms', 'latency_ms')}
        med = {k: float(np.median(v)) if v else float('nan') for k, v in stages.items()}
        e2e = [(got[t][0] - t) / 1e6 for t in ones]
        row = {'image_size': f'{w}x{h}', 'profile': profile, 'threads': threads,
               'confidence': confidence,
               'inference_size': list(inference_size), 'frames': len(ones),
               'sent': sent['sent'], 'delivered': single.get('received', 0),
               'stage_median_ms': med,
               'end_to_end_median_ms': float(np.median(e2e)) if e2e else float('nan')}
        if not ones:
            return row
        row['overhead_ms'] = med['latency_ms'] - med['model_ms']
        row['overhead_fraction'] = row['overhead_ms'] / med['latency_ms']
        # 3x the rate the model sustains
        rate = 3e3 / med['model_ms']
        count = max(3, int(overload_s * rate))
        before = listener.counts()
        with listener._lock:
            listener.frames.clear()
        sent = camera_probe.result(camera_probe.start(
            'camera', env, size=(h, w), rate=rate, count=count, wall_stamps=True))
        flood = _delta(_settled(listener), before)
        with listener._lock:
            got = dict(listener.frames)
        lat = percentiles([float(info['latency_ms']) for _, info in got.values()])
        model_ms = [float(info['model_ms']) for _, info in got.values()]
        row['overload'] = {
            'rate_hz': rate, 'sent': count, **flood,
            'accounted': flood.get('processed', 0) + flood.get('dropped', 0),
            'latency_p50_ms': lat['p50'], 'latency_p95_ms': lat['p95'],
            'model_median_ms': percentiles(model_ms, (50,))['p50']}
        return row
    finally:
        node.stop()
        listener.close()


def _rss_mib(pid: int, field: str = 'VmRSS') -> float:
    """Resident memory of a process now (VmRSS) or at its peak (VmHWM)."""
    text = Path(f'/proc/{pid}/status').read_text()
    return int(re.search(field + r':\s+(\d+)', text).group(1)) / 1024


def soak(model_path: str, seconds: float, size=(480, 640), rate: float = 5.0,
         warmup_s: float = 60.0) -> dict:
    """
    Run the node as configured by default (inference at the image's size).

    With the profile, fed for `seconds`; RSS sampled every 5 s.
    """
    env = ros_environment(profile=True)
    listener = _Listener()
    node = NodeProcess({'model_path': model_path, 'device': 'cpu', 'num_threads': 2,
                        'mask_classes': ['road', 'person', 'car']}, env).start()
    try:
        _wait_for_node(listener, node)
        count = int(seconds * rate)
        cam = camera_probe.start('camera', env, size=size, rate=rate, count=count,
                                 depth_every=1)
        samples, t0 = [], time.monotonic()
        while cam.poll() is None:
            samples.append((time.monotonic() - t0, _rss_mib(node.proc.pid)))
            time.sleep(5.0)
        sent = camera_probe.result(cam)
        counts = _settled(listener)
    finally:
        node.stop()
        listener.close()
    log = node.log
    return {'seconds': seconds, 'rate_hz': rate, 'size': f'{size[1]}x{size[0]}',
            'sent': sent['sent'], **counts,
            'accounted': counts.get('processed', 0) + counts.get('dropped', 0),
            **rss_growth(samples, warmup_s),
            'log_warnings': len(re.findall(r'\[(WARN|ERROR|FATAL)\]', log)),
            'log_lines': len(log.splitlines()), 'exit_code': node.returncode,
            'rss_samples': samples}


def rss_growth(samples: list[tuple[float, float]], warmup_s: float) -> dict:
    """
    RSS after warm-up, robust to the allocator's swings of tens of MiB.

    The medians of the first and second half, and a straight-line fit over the whole span.
    """
    t, rss = np.array(samples, dtype=float).T
    keep = t >= warmup_s
    t, rss = t[keep], rss[keep]
    half = len(t) // 2
    first, second = float(np.median(rss[:half])), float(np.median(rss[half:]))
    slope, start = np.polyfit(t, rss, 1)
    fit_growth = slope * (t[-1] - t[0]) / (start + slope * t[0])
    return {'rss_first_half_mib': first, 'rss_second_half_mib': second,
            'rss_growth_halves': second / first - 1, 'rss_slope_mib_per_min': float(60 * slope),
            'rss_growth_fit': float(fit_growth), 'rss_max_mib': float(rss.max())}


def lifecycle_memory(model_path: str, cycles: int = 3, size=(480, 640)) -> dict:
    """
    RSS of this process through configure, one frame, cleanup of perception_lifecycle_node.

    In-process, driven through the node's transitions: what a lifecycle manager that unloads
    the model (cleanup) gets back, and whether repeated cycles grow.
    """
    import gc

    from rclpy.parameter import Parameter

    from ..node.perception_lifecycle_node import PerceptionLifecycleNode
    pid = os.getpid()
    rows = []
    with Player('depthgate_bench_lifecycle') as player:
        node = player.add(PerceptionLifecycleNode(context=player.context, parameter_overrides=[
            Parameter('model_path', value=model_path), Parameter('device', value='cpu'),
            Parameter('inference_height', value=size[0]),
            Parameter('inference_width', value=size[1])]))
        gc.collect()
        rows.append({'step': 'unconfigured', 'rss_mib': _rss_mib(pid)})
        for cycle in range(cycles):
            node.trigger_configure()
            rows.append({'step': f'configured ({cycle + 1})', 'rss_mib': _rss_mib(pid)})
            node.perception.predictor.predict(np.zeros((*size, 3), np.uint8))
            rows.append({'step': f'after one {size[0]}x{size[1]} frame', 'rss_mib':
                         _rss_mib(pid)})
            node.trigger_cleanup()
            rows.append({'step': f'cleaned up ({cycle + 1})', 'rss_mib': _rss_mib(pid)})
    cleaned = [r['rss_mib'] for r in rows if r['step'].startswith('cleaned')]
    return {'model_path': model_path, 'cycles': cycles, 'steps': rows,
            'returned_by_cleanup_mib': [b['rss_mib'] - a['rss_mib'] for b, a in
                                        zip(rows[2::3], rows[3::3])],
            'growth_over_cycles_mib': cleaned[-1] - cleaned[0]}


def bench_cameras(model_path: str, n: int = 3, size=(480, 640), rate: float = 15.0,
                  seconds: float = 20.0) -> dict:
    """
    Serve `n` cameras at `rate` Hz each with one node, then with a node per camera.

    Each camera is a camera_probe process; every node runs with its defaults (torch threads:
    one per core), the cameras' size as its inference size and the large-image profile.
    Counted over the cameras' stamps after a warm-up (4 s at most): frames processed per
    camera, latencies; RSS sampled every second.
    """
    names, warmup_s = tuple(CAMERA_RING)[:n], min(4.0, seconds / 4)
    env = ros_environment(profile=True)
    # the cameras' size as the inference size, so that each node compiles its network (option
    # `compile`) in configure, before it announces its outputs, and not during the count
    params = {'model_path': model_path, 'device': 'cpu', 'inference_height': size[0],
              'inference_width': size[1]}
    # a node per camera with torch's default threads (one per core each), and with the cores
    # shared out between them, as one would tune them by hand
    split = max(1, (os.cpu_count() or 1) // n)

    def separate(threads: int):
        return ([NodeProcess({**params, 'num_threads': threads}, env, log_level='warn', remap={
            '__node': f'perception_{c}', **{r: f'{c}/{r}' for r in ROLES}}) for c in names],
            {c: f'/perception_{c}/frame_info' for c in names})
    setups = {'separate_nodes': separate(0), 'separate_nodes_split': separate(split),
              'one_node': ([NodeProcess({**params, 'cameras': list(names)}, env,
                                        log_level='warn')],
                           {c: f'/perception_node/{c}/frame_info' for c in names})}
    result = {'cameras': list(names), 'size': f'{size[1]}x{size[0]}', 'rate_hz': rate,
              'seconds': seconds, 'warmup_s': warmup_s, 'split_threads': split}
    for key, (nodes, topics) in setups.items():
        result[key] = _ring(nodes, topics, env, size, rate, seconds, warmup_s)
    one = result['one_node']
    best = max((result[k] for k in ('separate_nodes', 'separate_nodes_split')),
               key=lambda r: r['processed_hz'])
    result['rss_ratio'] = one['rss_median_mib'] / result['separate_nodes']['rss_median_mib']
    result['throughput_ratio'] = one['processed_hz'] / best['processed_hz']
    return result


def _ring(nodes: list[NodeProcess], topics: dict[str, str], env: dict, size, rate: float,
          seconds: float, warmup_s: float) -> dict:
    listener = _Listener(tuple(topics.values()))
    for node in nodes:
        node.start()
    try:
        end = time.monotonic() + 180
        while not all(listener.player.peer.count_publishers(t) for t in topics.values()):
            if time.monotonic() > end or not all(node.running() for node in nodes):
                raise RuntimeError('a node did not start:\n' + '\n'.join(n.log for n in nodes))
            time.sleep(0.2)
        cams = {c: camera_probe.start('camera', env, size=size, rate=rate,
                                      count=int(rate * seconds), wall_stamps=True,
                                      prefix=f'{c}/') for c in topics}
        t0, rss = time.monotonic(), []
        while any(cam.poll() is None for cam in cams.values()):
            if time.monotonic() - t0 > warmup_s + 1.0:
                rss.append(sum(_rss_mib(node.proc.pid) for node in nodes))
            time.sleep(1.0)
        sent = {c: camera_probe.result(cam) for c, cam in cams.items()}
        time.sleep(2.0)                                      # the last frames finish
        peak = sum(_rss_mib(node.proc.pid, 'VmHWM') for node in nodes)
        with listener._lock:
            frames = {c: dict(listener.frames_of[t]) for c, t in topics.items()}
    finally:
        for node in nodes:
            node.stop()
        listener.close()
    per_camera, window_s = {}, seconds - warmup_s
    for c, got in frames.items():
        start = sent[c]['first_stamp_ns'] + int(warmup_s * 1e9)
        infos = [info for stamp, (_, info) in got.items()
                 if start <= stamp < sent[c]['first_stamp_ns'] + int(seconds * 1e9)]
        lat = percentiles([float(i['latency_ms']) for i in infos])
        per_camera[c] = {'sent': sent[c]['sent'], 'processed': len(infos),
                         'processed_hz': len(infos) / window_s,
                         'latency_p50_ms': lat['p50'], 'latency_p95_ms': lat['p95'],
                         **{f'{k}_median': float(np.median([float(i[k]) for i in infos]))
                            if infos else float('nan')
                            for k in ('decode_ms', 'model_ms', 'publish_ms')},
                         'batch_mean': float(np.mean([int(i.get('batch', 1)) for i in infos]))
                         if infos else float('nan')}
    counts = [p['processed'] for p in per_camera.values()]
    return {'nodes': len(nodes), 'per_camera': per_camera,
            'processed_hz': sum(p['processed_hz'] for p in per_camera.values()),
            # fairness: how far the least-served camera is below the best-served one
            'spread': 1 - min(counts) / max(counts) if max(counts) else float('nan'),
            'rss_median_mib': float(np.median(rss)) if rss else float('nan'),
            'rss_peak_mib': peak}
