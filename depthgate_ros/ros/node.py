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
perception_node: depth-gated recurrent segmentation on a camera stream.

Subscribes (relative names, remappable): `image` (sensor_msgs/Image), optional `depth`
(REP 118 Image), `disparity` (stereo_msgs/DisparityImage) and `camera_info`. Publishes under
the node's namespace `~/labels`, `~/labels_color`, `~/depth`, `~/confidence`, `~/gate`,
`~/masks/<class>`, `~/points` and `~/frame_info` (gate source, loops and timings of the
frame), each with the input image's header, and `/diagnostics`.

Subscription callbacks only store messages: inference runs on a worker thread that always
takes the newest image (at most one waits; a replaced one is counted), so a slow model never
builds a backlog of stale frames. /diagnostics accounts for every image the camera sent:
processed, replaced here, lost in transport, or skipped by the stamps (accounting.py).
"""
from __future__ import annotations

from collections import deque
import signal
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage
import torch

from .accounting import StreamAccounting
from .compat import SubscriptionEventCallbacks
from .image_codec import (array_to_msg, camera_focal, depth_from_msg, ImageDecodeError,
                          rgb_from_msg)
from .pairing import DepthPairing, NS
from .parameters import check, declare, ModelFacts, ParameterError, PARAMETERS, STATIC, topic_name
from .pointcloud import depth_to_cloud
from .switch_log import SwitchLog
from ..inference import Predictor
from ..model.checkpoint import CheckpointError
from ..model.config import DEPTH_GATES
from ..model.depth_bins import disparity_to_depth
from ..visualize import colorize_labels, palette
from ..weights import bundled_checkpoint

__all__ = ['PARAMETERS', 'PerceptionNode', 'main']
OUTPUTS = ('labels', 'labels_color', 'depth', 'confidence', 'gate', 'points')
# A matched image publisher that delivers (almost) nothing for this long earns a warning.
SILENCE_WARN_S = 3.0
README_DDS = "README section 'Camera-sized images over DDS'"
STATUS_NAME = 'depthgate_ros: perception_node'      # its entry in /diagnostics


def stamp_ns(header) -> int:
    return header.stamp.sec * NS + header.stamp.nanosec


class PerceptionNode(Node):
    """Raises ParameterError (naming the parameter) when it cannot start."""

    def __init__(self, **kwargs):
        super().__init__('perception_node', **kwargs)
        # First, so that destroy_node works on a node whose start failed half-way.
        self._wake = threading.Condition()
        self._publishing = threading.Lock()
        self._stop = False
        self._worker: threading.Thread | None = None
        p = declare(self)
        if problem := check(p):
            raise problem
        if p['num_threads'] > 0:
            torch.set_num_threads(p['num_threads'])
        path = p['model_path'] or bundled_checkpoint()
        if not path:
            raise ParameterError('model_path', 'no model: this build ships no bundled model')
        size = (p['inference_height'], p['inference_width']) if p['inference_height'] and \
            p['inference_width'] else None
        try:
            self.predictor = Predictor.from_checkpoint(
                path, device=p['device'], fp16=p['fp16'], channels_last=p['channels_last'],
                size=size, tta_scales=p['tta_scales'], tta_flip=p['tta_flip'],
                depth_blur_sigma=p['depth_blur_sigma'])
        except (CheckpointError, OSError) as e:
            raise ParameterError('model_path', str(e)) from None
        self.model_path = str(path)
        self.lut = palette(self.predictor.info.colors)
        self.class_ids = {topic_name(n): i for i, n in enumerate(self.predictor.info.class_names)}
        self.model_facts = ModelFacts(frozenset(self.class_ids),
                                      bool(self.predictor.cfg.recurrent))
        if problem := check(p, self.model_facts):
            raise problem
        self._lock = threading.Lock()       # guards settings, pairing, camera info, stats
        self._apply_dynamic(p)
        self.pairing = DepthPairing(p['sync_slop'], p['depth_timeout'],
                                    queue_size=max(10, p['input_queue_depth']))
        self.camera_info: CameraInfo | None = None
        self._warm_up()

        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        self.pubs = {name: self.create_publisher(
            PointCloud2 if name == 'points' else Image, f'~/{name}', out_qos)
            for name in OUTPUTS}
        self.mask_pubs: dict[str, object] = {}
        self._update_mask_publishers()
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # Per frame, with the input's header: which gate was used, loops, timings.
        self.frame_info_pub = self.create_publisher(DiagnosticArray, '~/frame_info', out_qos)

        self._slot: tuple[Image, int, float] | None = None
        self.accounting = StreamAccounting()
        self._errors = {'errors': 0, 'depth_errors': 0, 'oom': 0, 'stamp_warnings': 0}
        self._window: deque = deque(maxlen=200)     # (finish time, latency s, model s)
        self._received_times: deque = deque(maxlen=400)
        self.gate_log = SwitchLog()
        self.last_gate_source: str | None = None
        self._last_stamp: int | None = None
        self._throttle: dict[str, float] = {}
        # (time, received, lost) at the last transport check, and whether it warned
        self._transport_check = (time.monotonic(), 0, 0)
        self._transport_warned = False

        reliability = ReliabilityPolicy.RELIABLE if p['input_reliability'] == 'reliable' \
            else ReliabilityPolicy.BEST_EFFORT
        in_qos = QoSProfile(depth=p['input_queue_depth'], history=HistoryPolicy.KEEP_LAST,
                            reliability=reliability)
        # Images: history 1. Only the newest is processed, and a deeper reader queue would
        # hand the executor stale frames whenever inference starves it of CPU.
        image_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        self.subs = {topic: self.create_subscription(
            msg_type, topic, callback, qos, event_callbacks=self._qos_events(topic))
            for msg_type, topic, callback, qos in (
                (Image, 'image', self._on_image, image_qos),
                (Image, 'depth', self._on_depth, in_qos),
                (DisparityImage, 'disparity', self._on_disparity, in_qos),
                (CameraInfo, 'camera_info', self._on_camera_info, in_qos))}

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(p['diagnostics_period'], self._publish_diagnostics)
        self._name_checks = 0
        self._name_check = self.create_timer(2.0, self._check_duplicate_name)
        self._worker = threading.Thread(target=self._run, name='depthgate-inference',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'model {self.model_path} on {self.predictor.device}, '
            f'{len(self.predictor.info.class_names)} classes, loops {self.loops}')

    # -- parameters ---------------------------------------------------------------------

    def _apply_dynamic(self, p: dict) -> None:
        self.loops = self.predictor.loops if p['loops'] < 0 else p['loops']
        self.budget_ms = p['latency_budget_ms'] or None
        self.predictor.hard_gate = p['hard_gate']
        self.gate_source = p['gate_source']
        self.depth_unit_scale = p['depth_unit_scale']
        self.enabled = {name: bool(p[f'publish_{name}']) for name in OUTPUTS}
        self.alpha = p['labels_color_alpha']
        self.mask_classes = [topic_name(c) for c in p['mask_classes'] if c.strip()]

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {x.name: x.value for x in params}
        static = [name for name in changes if name in STATIC]
        if static:
            return SetParametersResult(successful=False,
                                       reason=f'{static[0]} is read at start; restart the node')
        current = {name: self.get_parameter(name).value for name in PARAMETERS}
        current.update(changes)
        if problem := check(current, self.model_facts):
            return SetParametersResult(successful=False, reason=str(problem))
        with self._lock:
            self._apply_dynamic(current)
            self.pairing.configure(current['sync_slop'], current['depth_timeout'])
        if 'mask_classes' in changes:
            self._update_mask_publishers()
        return SetParametersResult(successful=True)

    def _update_mask_publishers(self) -> None:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        with self._lock:
            for name in self.mask_classes:
                if name not in self.mask_pubs:
                    self.mask_pubs[name] = self.create_publisher(Image, f'~/masks/{name}', qos)

    def _qos_events(self, topic: str) -> SubscriptionEventCallbacks:
        def incompatible(event):
            self.get_logger().warning(
                f"a publisher on '{topic}' has incompatible QoS (policy "
                f'{event.last_policy_kind}); no messages will arrive from it. Set '
                'input_reliability to match it.')

        def lost(event):                    # samples DDS knows it missed, e.g. a lost fragment
            with self._lock:
                self.accounting.on_lost(event.total_count)
        return SubscriptionEventCallbacks(incompatible_qos=incompatible,
                                          message_lost=lost if topic == 'image' else None)

    def _check_duplicate_name(self) -> None:
        # every 2 s for the first 10 s (discovery of a slow-starting twin takes a while);
        # one warning at most
        self._name_checks += 1
        me = (self.get_name(), self.get_namespace())
        twins = sum(1 for n in self.get_node_names_and_namespaces() if n == me)
        if twins > 1 or self._name_checks >= 5:
            self._name_check.cancel()
        if twins > 1:
            fqn = self.get_fully_qualified_name()
            self.get_logger().warning(
                f'{twins} nodes are named {fqn}: their outputs, parameters and '
                '/diagnostics collide; give each its own name or namespace')

    # -- callbacks: store only ------------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        with self._wake:
            replaced = self._slot is not None
            self._slot = (msg, self._now_ns(), now)
            self._wake.notify()
        with self._lock:
            self.accounting.on_received(stamp_ns(msg.header))
            self.accounting.replaced += replaced
            self._received_times.append(now)

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self.pairing.add(stamp_ns(msg.header), ('depth', msg), self._now_ns())
        with self._wake:
            self._wake.notify()

    def _on_disparity(self, msg: DisparityImage) -> None:
        with self._lock:
            self.pairing.add(stamp_ns(msg.header), ('disparity', msg), self._now_ns())
        with self._wake:
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self.camera_info = msg

    # -- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._slot is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                msg, arrival_ns, arrival_mono = self._slot
                self._slot = None
            try:
                done = self._process(msg, arrival_ns, arrival_mono)
            except Exception as e:  # never let one frame kill the node
                done = False
                self._count('errors')
                self._warn('frame', f'frame skipped: {type(e).__name__}: {e}')
            if not done:
                with self._lock:
                    self.accounting.failed += 1

    def _partner(self, stamp: int, arrival_ns: int):
        """
        Return the paired depth message, waiting while depth flows (bounded by depth_timeout).

        None = monocular. Gives up early when a newer image arrives.
        """
        expected = self._depth_expected         # once a frame, not every 5 ms of waiting
        while True:
            with self._lock:
                match = self.pairing.match(stamp) if stamp else None
                wait = match is None and stamp and self.pairing.should_wait(
                    arrival_ns, self._now_ns(), expected=expected)
            if not wait:
                return match.item if match else None
            with self._wake:
                if self._slot is not None or self._stop:
                    return None
                self._wake.wait(timeout=0.005)

    @property
    def _depth_expected(self) -> bool:
        """Tell whether a depth or disparity publisher is matched (a silent stream may resume)."""
        return any(self.subs[t].get_publisher_count() for t in ('depth', 'disparity'))

    def _process(self, msg: Image, arrival_ns: int, arrival_mono: float) -> bool:
        """Run one frame; False when it produced no output."""
        t_decode = time.monotonic()
        try:
            rgb = rgb_from_msg(msg)
        except ImageDecodeError as e:
            self._count('errors')
            self._warn('decode', f'image dropped: {e}')
            return False
        decode_s = time.monotonic() - t_decode
        stamp = stamp_ns(msg.header)
        if stamp == 0:
            self._count('stamp_warnings')
            self._warn('stamp', 'image stamp is zero: cannot pair depth, running monocular')
        elif self._last_stamp is not None and stamp < self._last_stamp:
            self._count('stamp_warnings')
            self._warn('stamp', 'image stamps went backwards (bag restarted?): depth pairing '
                       'reset')
            with self._lock:
                self.pairing.reset()
        self._last_stamp = stamp or self._last_stamp
        with self._lock:
            gate_pref, loops, budget = self.gate_source, self.loops, self.budget_ms
            enabled, alpha = dict(self.enabled), self.alpha
            masks = {n: self.mask_pubs[n] for n in self.mask_classes if n in self.mask_pubs}
            info, unit = self.camera_info, self.depth_unit_scale
        depth = None
        if gate_pref in ('auto',) + DEPTH_GATES:
            partner = self._partner(stamp, arrival_ns)
            if partner is not None:
                t_depth = time.monotonic()
                depth = self._decode_depth(partner, unit)
                decode_s += time.monotonic() - t_depth
        # The Predictor resolves the gate per frame (auto: hybrid with depth, else predicted).
        gate = gate_pref
        if self.predictor.cfg.gate_source in ('none', 'attention', 'average'):
            gate = None                       # the model's own gate; sensor depth unused
        # depth stays metric on a camera unlike the training one (Predictor.camera_scale)
        focal = camera_focal(info, rgb.shape[1])
        t0 = time.monotonic()
        try:
            pred = self.predictor.predict(rgb, depth, loops=loops, gate=gate,
                                          budget_ms=budget, focal_px=focal)
        except torch.cuda.OutOfMemoryError:
            self._count('oom')
            torch.cuda.empty_cache()
            self._warn('oom', 'CUDA out of memory: frame skipped, cache freed')
            return False
        model_s = time.monotonic() - t0
        # Publishing holds _publishing: stop_worker() takes it, so no publish can run into a
        # context that main() is about to shut down.
        with self._publishing:
            if self._stop:
                return False
            self._publish(msg, rgb, pred, depth, enabled, alpha, masks, info)
            done = time.monotonic()
            # decode_ms: image (and depth) conversion in; publish_ms: conversion out and
            # publish; latency_ms: arrival to published, including any wait for depth.
            self._publish_frame_info(msg.header, pred, {
                'model_ms': model_s, 'decode_ms': decode_s, 'publish_ms': done - t0 - model_s,
                'latency_ms': done - arrival_mono})
        with self._lock:
            self.accounting.processed += 1
            self._window.append((done, done - arrival_mono, model_s))
        self.last_gate_source = pred.gate_source
        if switch := self.gate_log.update(pred.gate_source, done):
            self.get_logger().info(f'gate source: {switch[0]} -> {switch[1]}')
        return True

    def _decode_depth(self, partner, unit: float):
        kind, m = partner
        try:
            if kind == 'depth':
                return depth_from_msg(m, unit)
            d = depth_from_msg(m.image)     # 32FC1 disparity in pixels
            if m.f <= 0 or m.t <= 0:
                raise ImageDecodeError(f'disparity with f={m.f}, T={m.t} cannot give depth')
            return disparity_to_depth(d, m.f, m.t)
        except ImageDecodeError as e:
            self._count('depth_errors')
            self._warn('depth', f'{kind} ignored, running monocular: {e}')
            return None

    def _publish(self, msg, rgb, pred, depth, enabled, alpha, masks, info) -> None:
        header = msg.header
        if enabled['labels']:
            enc = 'mono8' if pred.labels.dtype == np.uint8 else 'mono16'
            self.pubs['labels'].publish(array_to_msg(pred.labels, enc, header))
        if enabled['labels_color']:
            img = colorize_labels(pred.labels, self.lut, rgb, alpha)
            self.pubs['labels_color'].publish(array_to_msg(img, 'rgb8', header))
        if enabled['depth']:
            self.pubs['depth'].publish(array_to_msg(pred.depth, '32FC1', header))
        if enabled['confidence']:
            self.pubs['confidence'].publish(array_to_msg(pred.confidence, '32FC1', header))
        if enabled['gate'] and pred.gate is not None:
            self.pubs['gate'].publish(array_to_msg(pred.gate, 'mono8', header))
        for name, pub in masks.items():
            mask = np.where(pred.labels == self.class_ids[name], 255, 0).astype(np.uint8)
            pub.publish(array_to_msg(mask, 'mono8', header))
        if enabled['points']:
            if info is None:
                self._warn('points', '~/points needs camera_info; none received yet')
            else:
                # Sensor depth where the frame has it, the network's estimate elsewhere.
                d = pred.depth if depth is None else np.where(np.isfinite(depth), depth,
                                                              pred.depth)
                self.pubs['points'].publish(depth_to_cloud(d, rgb, pred.labels, info, header))

    def _publish_frame_info(self, header, pred, seconds: dict[str, float]) -> None:
        status = DiagnosticStatus(name='depthgate_ros: frame', level=DiagnosticStatus.OK,
                                  message=pred.gate_source)
        status.values = [KeyValue(key='gate_source', value=pred.gate_source),
                         KeyValue(key='loops', value=str(pred.loops))] + [
            KeyValue(key=k, value=f'{v * 1e3:.2f}') for k, v in seconds.items()]
        self.frame_info_pub.publish(DiagnosticArray(header=header, status=[status]))

    def _warn(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._throttle.get(key, -1e9) >= period:
            self._throttle[key] = now
            self.get_logger().warning(text)

    # -- health -----------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self._errors[key] += 1

    @property
    def stats(self) -> dict:
        """Counters since start: the image accounting and the error counts."""
        with self._lock:
            return {**self.accounting.snapshot(), **self._errors}

    def diagnostics(self) -> dict:
        now, span = time.monotonic(), 10.0
        with self._lock:
            window = [w for w in self._window if now - w[0] <= span]
            received = [t for t in self._received_times if now - t <= span]
        stats = self.stats
        lat = np.array([w[1] for w in window]) * 1e3
        model = np.array([w[2] for w in window]) * 1e3
        return {
            'camera_rate_hz': stats.pop('camera_rate_hz'),
            'input_rate_hz': len(received) / span, 'processed_rate_hz': len(window) / span,
            'latency_p50_ms': float(np.percentile(lat, 50)) if len(lat) else float('nan'),
            'latency_p95_ms': float(np.percentile(lat, 95)) if len(lat) else float('nan'),
            'model_p50_ms': float(np.percentile(model, 50)) if len(model) else float('nan'),
            'gate_source': self.last_gate_source or 'none yet',
            'device': str(self.predictor.device), 'loops': self.loops, **stats}

    def _check_transport(self) -> None:
        """
        Warn about images that do not arrive; runs every few seconds.

        A matched image publisher whose images do not arrive (none at all, or more lost in
        transport than received) gets one warning until it recovers.
        """
        now, stats = time.monotonic(), self.stats
        if self.subs['image'].get_publisher_count() == 0:     # the window starts at a match
            self._transport_check = (now, stats['received'], stats['lost_in_transport'])
            self._transport_warned = False
            return
        if now - self._transport_check[0] < SILENCE_WARN_S:
            return
        _, received, lost = self._transport_check
        self._transport_check = (now, stats['received'], stats['lost_in_transport'])
        got, lost = stats['received'] - received, stats['lost_in_transport'] - lost
        if got and lost <= got:
            self._transport_warned = False
            return
        if not self._transport_warned:
            self._transport_warned = True
            self.get_logger().warning(
                f"images on '{self.subs['image'].topic_name}' are not arriving: {got} received "
                f'and {lost} reported lost in transport in the last {SILENCE_WARN_S:.0f} s '
                'although a publisher is matched. Likely cause: images larger than the DDS '
                f'shared-memory segment, sent best effort over fragmented UDP; see the '
                f'{README_DDS}.')

    def _publish_diagnostics(self) -> None:
        self._check_transport()
        d = self.diagnostics()
        status = DiagnosticStatus(name=STATUS_NAME,
                                  hardware_id=d['device'])
        errors = d['errors'] + d['depth_errors'] + d['oom']
        if d['received'] == 0:
            status.level, status.message = DiagnosticStatus.WARN, 'no images received'
        elif errors:
            status.level, status.message = DiagnosticStatus.WARN, f'{errors} errors'
        else:
            status.level, status.message = DiagnosticStatus.OK, f"gate {d['gate_source']}"
        status.values = [KeyValue(key=k, value=f'{v:.2f}' if isinstance(v, float) else str(v))
                         for k, v in d.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def stop_worker(self, timeout: float = 10.0) -> None:
        """Stop inference; once this returns no frame will be published."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        with self._publishing:      # waits for a publish under way
            pass
        if self._worker is not None:
            self._worker.join(timeout)

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()

    def _warm_up(self) -> None:
        """One pass at start: allocations, cuDNN algorithm choice, lazy init."""
        self.predictor.predict(np.zeros((64, 64, 3), np.uint8))


def main(args=None) -> int:
    # Our own SIGINT/SIGTERM handling: rclpy's would invalidate the context while the worker
    # may still be publishing. Here a signal only asks the spin loop to end; the worker is
    # stopped before anything is destroyed.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log = rclpy.logging.get_logger('perception_node')
    try:
        node = PerceptionNode()
    except (ParameterError, ValueError, RuntimeError) as e:    # one line, no traceback
        log.fatal(f'cannot start: {e}')
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        node.stop_worker()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
