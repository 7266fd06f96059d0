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
The ROS side of perception_node, shared by the plain and the managed (lifecycle) node.

Subscribes (relative names, remappable): `image` (sensor_msgs/Image, or `image/compressed` with
image_transport:=compressed), optional `depth` (REP 118 Image, or `depth/compressedDepth`),
`disparity` (stereo_msgs/DisparityImage) and `camera_info`. Publishes under the node's
namespace `~/labels`, `~/labels_color`, `~/depth`, `~/confidence`, `~/gate`, `~/masks/<class>`,
`~/points` and `~/frame_info` (gate source, loops and timings of the frame), each with the input
image's header, and `/diagnostics`.

The life cycle follows ROS 2 managed nodes: `configure` reads the parameters, loads the model
and creates the publishers; `activate` subscribes and starts the worker; `deactivate` and
`cleanup` undo them in reverse. Subscription callbacks only store messages: the worker thread
always takes the newest image (at most one waits; a replaced one is counted), so a slow model
never builds a backlog of stale frames. The per-frame work is frames.FramePipeline's.

Every torch call runs on the worker's thread, loading the model included (`_torch`): torch's
OpenMP gives each thread that runs parallel work its own pool of threads, and once the pools
hold more threads than there are cores, libgomp stops spinning between parallel regions. With
the model loaded on the executor's thread and run on the worker's, the fast model took 70 ms
instead of 44 at 480 x 640 on 2 cores.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
import ctypes
from dataclasses import replace
import gc
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from stereo_msgs.msg import DisparityImage
import torch

from .compat import SubscriptionEventCallbacks
from .health import Health, SILENCE_WARN_S
from .image_codec import (array_to_msg, camera_focal, decode_partner, decode_rgb,
                          ImageDecodeError)
from .parameters import check, declare, ModelFacts, ParameterError, PARAMETERS, STATIC
from .pointcloud import depth_to_cloud
from .switch_log import SwitchLog
from ..frames import FramePipeline, FrameSettings, IMAGE_OUTPUTS, mask_names
from ..inference import Predictor
from ..model.checkpoint import CheckpointError
from ..options import PredictorOptions
from ..pairing import stamp_ns
from ..weights import bundled_checkpoint

OUTPUTS = IMAGE_OUTPUTS + ('points',)
README_DDS = "README section 'Camera-sized images over DDS'"
STATUS_NAME = 'depthgate_ros: perception_node'      # its entry in /diagnostics


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise; elsewhere a no-op)."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Perception:
    """
    Parameters, subscriptions, worker, publishers and health of one perception node.

    Declares the node's parameters. `create_publisher` / `destroy_publisher` are the node's
    (lifecycle publishers for the managed node). `configure` raises ParameterError, naming
    the parameter.
    """

    def __init__(self, node, create_publisher, destroy_publisher):
        self.node = node
        self._create_publisher, self._destroy_publisher = create_publisher, destroy_publisher
        self._wake = threading.Condition()
        self._publishing = threading.Lock()
        self._lock = threading.Lock()       # guards settings, pairing, camera info
        self._stop = True
        self._torch: ThreadPoolExecutor | None = None   # the one thread that runs torch
        self._worker = None                             # its Future while frames are processed
        self.predictor: Predictor | None = None
        self.pipeline: FramePipeline | None = None
        self.model_facts: ModelFacts | None = None
        self.pubs: dict[str, object] = {}       # by output name, masks as 'masks/<class>'
        self.subs: dict[str, object] = {}
        self._timers: list = []
        self.active = False
        declare(node)       # then watch: a set during declaration has nothing to check against
        node.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def log(self):
        return self.node.get_logger()

    # -- transitions --------------------------------------------------------------------

    def configure(self) -> None:
        """Read the parameters, load the model, create the publishers."""
        p = {name: self.node.get_parameter(name).value for name in PARAMETERS}
        if problem := check(p):
            raise problem
        path = p['model_path'] or bundled_checkpoint()       # a name resolves on loading
        if not path:
            raise ParameterError('model_path', 'no model: this build ships no bundled model')
        self._torch = ThreadPoolExecutor(1, thread_name_prefix='depthgate-inference')
        try:
            self._configure(p, path)
        except BaseException:
            self._stop_torch()
            raise

    def _configure(self, p: dict, path) -> None:
        """Configure with the torch thread running."""
        # the dynamic options are applied per frame, after the model-dependent check
        options = replace(PredictorOptions.from_values(p), loops=-1, gate_source='auto',
                          hard_gate=False)
        predictor = self._torch.submit(self._load, path, options, p['num_threads']).result()
        pipeline = FramePipeline(predictor, decode_partner, sync_slop=p['sync_slop'],
                                 depth_timeout=p['depth_timeout'],
                                 queue_size=max(10, p['input_queue_depth']))
        facts = ModelFacts(frozenset(pipeline.class_ids), bool(predictor.cfg.recurrent),
                           predictor.gates)
        if problem := check(p, facts):
            raise problem
        self.model_path, self.params = str(path), p
        self.predictor, self.pipeline, self.model_facts = predictor, pipeline, facts
        self._apply_dynamic(p)
        self.camera_info: CameraInfo | None = None
        # allocations, lazy init; with depth, which an export gated on sensor depth needs
        self._torch.submit(predictor.predict, np.zeros((64, 64, 3), np.uint8),
                           np.full((64, 64), 10.0, np.float32)).result()

        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        self.pubs = {name: self._create_publisher(
            PointCloud2 if name == 'points' else Image, f'~/{name}', out_qos)
            for name in OUTPUTS}
        # Per frame, with the input's header: which gate was used, loops, timings.
        self.pubs['frame_info'] = self._create_publisher(DiagnosticArray, '~/frame_info',
                                                         out_qos)
        self.pubs['diagnostics'] = self._create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._add_mask_publishers(p['mask_classes'])
        self._reset_health()
        self.log.info(f'model {self.model_path} on {predictor.device}, '
                      f'{len(predictor.info.class_names)} classes, loops {self.loops}')

    @staticmethod
    def _load(path, options: PredictorOptions, num_threads: int) -> Predictor:
        """Load the model (on the torch thread)."""
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            return Predictor.from_checkpoint(path, **options.predictor_kwargs())
        except (CheckpointError, OSError) as e:
            raise ParameterError('model_path', str(e)) from None

    def _stop_torch(self) -> None:
        """End the torch thread (after stop_worker); its OpenMP pool goes with it."""
        if self._torch is not None:
            self._torch.shutdown(wait=True)
            self._torch = None

    def activate(self) -> None:
        """Subscribe and start the worker."""
        p = self.params
        reliability = ReliabilityPolicy.RELIABLE if p['input_reliability'] == 'reliable' \
            else ReliabilityPolicy.BEST_EFFORT
        in_qos = QoSProfile(depth=p['input_queue_depth'], history=HistoryPolicy.KEEP_LAST,
                            reliability=reliability)
        # Images: history 1. Only the newest is processed, and a deeper reader queue would
        # hand the executor stale frames whenever inference starves it of CPU.
        image_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        # image_transport's topics hang below the resolved (remapped) base topic.
        image, depth = 'image', 'depth'
        image_type = depth_type = Image
        if p['image_transport'] == 'compressed':
            image, image_type = self.node.resolve_topic_name('image') + '/compressed', \
                CompressedImage
        depth_kind = 'depth'
        if p['depth_transport'] == 'compressedDepth':
            depth, depth_type = self.node.resolve_topic_name('depth') + '/compressedDepth', \
                CompressedImage
            depth_kind = 'compressedDepth'
        self.subs = {role: self.node.create_subscription(
            msg_type, topic, callback, qos, event_callbacks=self._qos_events(role))
            for role, msg_type, topic, callback, qos in (
                ('image', image_type, image, self._on_image, image_qos),
                ('depth', depth_type, depth, self._on_depth(depth_kind), in_qos),
                ('disparity', DisparityImage, 'disparity', self._on_depth('disparity'),
                 in_qos),
                ('camera_info', CameraInfo, 'camera_info', self._on_camera_info, in_qos))}
        self._timers = [self.node.create_timer(p['diagnostics_period'],
                                               self._publish_diagnostics)]
        self._name_checks = 0
        self._name_check = self.node.create_timer(2.0, self._check_duplicate_name)
        self._timers.append(self._name_check)
        self._stop = False
        self._worker = self._torch.submit(self._run)
        self._worker.add_done_callback(self._worker_ended)
        self.active = True

    def deactivate(self) -> None:
        """Stop processing and publishing; keep the model and the publishers."""
        self.active = False
        self.stop_worker()
        for sub in self.subs.values():
            self.node.destroy_subscription(sub)
        for timer in self._timers:
            self.node.destroy_timer(timer)
        self.subs, self._timers = {}, []
        with self._wake:
            self._slot = None

    def cleanup(self) -> None:
        """Destroy the publishers, free the model (and the CUDA cache), end the torch thread."""
        for pub in self.pubs.values():
            self._destroy_publisher(pub)
        self.pubs = {}
        cuda = self.predictor is not None and self.predictor.device.type == 'cuda'
        self.predictor = self.pipeline = self.model_facts = None
        self._stop_torch()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        _return_freed_memory()

    def _reset_health(self) -> None:
        self._slot: tuple[Image, int, float] | None = None
        self.health = Health()
        self.gate_log = SwitchLog()
        self.last_gate_source: str | None = None
        self._throttle: dict[str, float] = {}

    # -- parameters ---------------------------------------------------------------------

    def _apply_dynamic(self, p: dict) -> None:
        self.loops = self.predictor.loops if p['loops'] < 0 else p['loops']
        self.predictor.hard_gate = p['hard_gate']
        self.settings = FrameSettings(
            gate=p['gate_source'], loops=self.loops, budget_ms=p['latency_budget_ms'] or None,
            depth_unit_scale=p['depth_unit_scale'],
            outputs=frozenset(n for n in IMAGE_OUTPUTS if p[f'publish_{n}']),
            labels_color_alpha=p['labels_color_alpha'],
            mask_classes=mask_names(p['mask_classes']))
        self.publish_points = bool(p['publish_points'])

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {x.name: x.value for x in params}
        configured = self.predictor is not None
        static = [name for name in changes if name in STATIC]
        if static and configured:
            return SetParametersResult(successful=False,
                                       reason=f'{static[0]} is read at configure: restart '
                                       'the node (managed: cleanup, set it, configure)')
        current = {name: self.node.get_parameter(name).value for name in PARAMETERS}
        current.update(changes)
        if problem := check(current, self.model_facts):
            return SetParametersResult(successful=False, reason=str(problem))
        if not configured:          # read at configure
            return SetParametersResult(successful=True)
        # publishers first: a frame that sees the new mask classes finds theirs
        self._add_mask_publishers(current['mask_classes'])
        with self._lock:
            self._apply_dynamic(current)
            self.pipeline.pairing.configure(current['sync_slop'], current['depth_timeout'])
        return SetParametersResult(successful=True)

    def _add_mask_publishers(self, classes: list[str]) -> None:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        with self._lock:
            for name in mask_names(classes):
                if f'masks/{name}' not in self.pubs:
                    pub = self._create_publisher(Image, f'~/masks/{name}', qos)
                    if self.active and hasattr(pub, 'on_activate'):
                        pub.on_activate(None)       # a lifecycle publisher born active
                    self.pubs[f'masks/{name}'] = pub

    def _qos_events(self, role: str) -> SubscriptionEventCallbacks:
        def incompatible(event):
            self.log.warning(
                f"a publisher on '{role}' has incompatible QoS (policy "
                f'{event.last_policy_kind}); no messages will arrive from it. Set '
                'input_reliability to match it.')
            self.health.count('incompatible_qos')     # after the warning: a reader sees both

        def lost(event):                    # samples DDS knows it missed, e.g. a lost fragment
            self.health.lost(event.total_count)
        return SubscriptionEventCallbacks(incompatible_qos=incompatible,
                                          message_lost=lost if role == 'image' else None)

    def _check_duplicate_name(self) -> None:
        # every 2 s for the first 10 s (discovery of a slow-starting twin takes a while);
        # one warning at most
        self._name_checks += 1
        me = (self.node.get_name(), self.node.get_namespace())
        twins = sum(1 for n in self.node.get_node_names_and_namespaces() if n == me)
        if twins > 1 or self._name_checks >= 5:
            self._name_check.cancel()
        if twins > 1:
            fqn = self.node.get_fully_qualified_name()
            self.log.warning(
                f'{twins} nodes are named {fqn}: their outputs, parameters and '
                '/diagnostics collide; give each its own name or namespace')

    # -- callbacks: store only ------------------------------------------------------------

    def _now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_image(self, msg) -> None:
        with self._wake:
            replaced = self._slot is not None
            self._slot = (msg, self._now_ns(), time.monotonic())
            self._wake.notify()
        self.health.received(stamp_ns(msg), replaced)

    def _on_depth(self, kind: str):
        def store(msg) -> None:
            with self._lock:
                self.pipeline.add_depth(stamp_ns(msg), (kind, msg), self._now_ns())
            with self._wake:
                self._wake.notify()
        return store

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
                self.health.count('errors')
                self._warn('frame', f'frame skipped: {type(e).__name__}: {e}')
            if not done:
                self.health.failed()

    def _worker_ended(self, worker) -> None:
        # a Future keeps its exception to itself: say that frames are no longer processed
        if not worker.cancelled() and (e := worker.exception()) is not None:
            self.log.error(f'inference worker stopped: {type(e).__name__}: {e}')

    def _partner(self, stamp: int, arrival_ns: int):
        """
        Return the paired depth item, waiting while depth flows (bounded by depth_timeout).

        None = monocular. Gives up early when a newer image arrives.
        """
        expected = self._depth_expected         # once a frame, not every 5 ms of waiting
        while True:
            with self._lock:
                match = self.pipeline.partner(stamp)
                wait = match is None and stamp and self.pipeline.pairing.should_wait(
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

    def _process(self, msg, arrival_ns: int, arrival_mono: float) -> bool:
        """Run one frame; False when it produced no output."""
        t_decode = time.monotonic()
        try:
            rgb = decode_rgb(msg)
        except ImageDecodeError as e:
            self.health.count('errors')
            self._warn('decode', f'image dropped: {e}')
            return False
        decode_s = time.monotonic() - t_decode
        stamp = stamp_ns(msg)
        with self._lock:
            warning = self.pipeline.check_stamp(stamp)
            settings, pubs = self.settings, dict(self.pubs)
            info, points = self.camera_info, self.publish_points
        if warning:
            self.health.count('stamp_warnings')
            self._warn('stamp', warning)
        partner = self._partner(stamp, arrival_ns) if \
            self.pipeline.wants_depth(settings.gate) else None
        # depth stays metric on a camera unlike the training one (Predictor.camera_scale)
        focal = camera_focal(info, rgb.shape[1])
        try:
            frame = self.pipeline.run(rgb, settings, partner=partner, focal_px=focal)
        except torch.cuda.OutOfMemoryError:
            self.health.count('oom')
            torch.cuda.empty_cache()
            self._warn('oom', 'CUDA out of memory: frame skipped, cache freed')
            return False
        if frame.depth_error:
            self.health.count('depth_errors')
            self._warn('depth', f'{partner[0]} ignored, running monocular: {frame.depth_error}')
        model_s = frame.seconds['model_s']
        t_out = time.monotonic()
        # Publishing holds _publishing: stop_worker() takes it, so no publish can run into a
        # context that is about to shut down.
        with self._publishing:
            if self._stop:
                return False
            header = msg.header
            for name, (array, encoding) in self.pipeline.images(frame, settings).items():
                pubs[name].publish(array_to_msg(array, encoding, header))
            if points:
                if info is None:
                    self._warn('points', '~/points needs camera_info; none received yet')
                else:
                    self.pubs['points'].publish(depth_to_cloud(
                        FramePipeline.fused_depth(frame), rgb, frame.prediction.labels, info,
                        header))
            done = time.monotonic()
            # decode_ms: image (and depth) conversion in; publish_ms: conversion out and
            # publish; latency_ms: arrival to published, including any wait for depth.
            self._publish_frame_info(header, frame.prediction, {
                'model_ms': model_s, 'decode_ms': decode_s + frame.seconds['depth_decode_s'],
                'publish_ms': done - t_out, 'latency_ms': done - arrival_mono})
        self.health.processed(done, done - arrival_mono, model_s)
        gate = frame.prediction.gate_source
        self.last_gate_source = gate
        if switch := self.gate_log.update(gate, done):
            self.log.info(f'gate source: {switch[0]} -> {switch[1]}')
        return True

    def _publish_frame_info(self, header, pred, seconds: dict[str, float]) -> None:
        status = DiagnosticStatus(name='depthgate_ros: frame', level=DiagnosticStatus.OK,
                                  message=pred.gate_source)
        status.values = [KeyValue(key='gate_source', value=pred.gate_source),
                         KeyValue(key='loops', value=str(pred.loops))] + [
            KeyValue(key=k, value=f'{v * 1e3:.2f}') for k, v in seconds.items()]
        self.pubs['frame_info'].publish(DiagnosticArray(header=header, status=[status]))

    def _warn(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._throttle.get(key, -1e9) >= period:
            self._throttle[key] = now
            self.log.warning(text)

    # -- health -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        return self.health.stats

    def diagnostics(self) -> dict:
        return {**self.health.diagnostics(), 'gate_source': self.last_gate_source or 'none yet',
                'device': str(self.predictor.device), 'loops': self.loops}

    def _check_transport(self) -> None:
        image = self.subs['image']
        if (problem := self.health.transport_problem(image.get_publisher_count())) is None:
            return
        got, lost = problem
        self.log.warning(
            f"images on '{image.topic_name}' are not arriving: {got} received and {lost} "
            f'reported lost in transport in the last {SILENCE_WARN_S:.0f} s although a '
            'publisher is matched. Likely cause: images larger than the DDS shared-memory '
            f'segment, sent best effort over fragmented UDP; see the {README_DDS}.')

    def _publish_diagnostics(self) -> None:
        self._check_transport()
        d = self.diagnostics()
        status = DiagnosticStatus(name=STATUS_NAME, hardware_id=d['device'])
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
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.pubs['diagnostics'].publish(array)

    def close(self) -> None:
        """Stop the worker and end the torch thread: the node is being destroyed."""
        self.stop_worker()
        self._stop_torch()

    def stop_worker(self, timeout: float = 10.0) -> None:
        """Stop inference; once this returns no frame will be published."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        with self._publishing:      # waits for a publish under way
            pass
        if self._worker is not None:
            wait([self._worker], timeout)
            self._worker = None
