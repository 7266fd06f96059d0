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
The ROS shell of perception_node, shared by the plain and the managed (lifecycle) node.

Subscribes (relative names, remappable): `image` (sensor_msgs/Image, or `image/compressed` with
image_transport:=compressed), optional `depth` (REP 118 Image, or `depth/compressedDepth`),
`disparity` (stereo_msgs/DisparityImage) and `camera_info`. Publishes under the node's
namespace `~/labels`, `~/labels_color`, `~/depth`, `~/confidence`, `~/gate`, `~/masks/<class>`,
`~/points` and `~/frame_info` (gate source, loops and timings of the frame), each with the input
image's header, and `/diagnostics`.

With `cameras` named (e.g. [front, left]) each camera has these inputs below its name
(`front/image`, ...) and these outputs below `~/front/`, and one status in /diagnostics beside
the node's total; one model serves them all (worker.py batches their frames).

The life cycle follows ROS 2 managed nodes: `configure` reads the parameters, loads the model
and creates the publishers; `activate` subscribes and starts the worker; `deactivate` and
`cleanup` undo them in reverse. The worker (worker.py) owns the frames: the newest-frame slot,
the torch thread, waiting for depth and the frame run. This shell owns what is ROS:
parameters, subscriptions, publishers and diagnostics.
"""
from __future__ import annotations

import ctypes
from dataclasses import replace
import gc
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from stereo_msgs.msg import DisparityImage
import torch

from .compat import SubscriptionEventCallbacks
from .health import SILENCE_WARN_S, total
from .image_codec import array_to_msg, camera_focal, decode_partner, decode_rgb
from .parameters import (camera_names, camera_parameter, camera_values, check, declare,
                         declare_cameras, is_static, ModelFacts, ParameterError, PARAMETERS)
from .pointcloud import depth_to_cloud
from .worker import FrameWorker
from ..frames import Frame, FramePipeline, FrameSettings, IMAGE_OUTPUTS, mask_names
from ..inference import Predictor
from ..model.checkpoint import CheckpointError
from ..options import CAMERA_OPTIONS, PredictorOptions
from ..weights import bundled_checkpoint

OUTPUTS = IMAGE_OUTPUTS + ('points',)
README_DDS = "README section 'Camera-sized images over DDS'"
STATUS_NAME = 'depthgate_ros: perception_node'      # its entry in /diagnostics (the total)
ROLES = ('image', 'depth', 'disparity', 'camera_info')  # a camera's inputs


def camera_status_name(camera: str) -> str:
    """Return a named camera's entry in /diagnostics."""
    return f'{STATUS_NAME}: {camera}'


def prefix(camera: str) -> str:
    """Return the start of a camera's topic names: 'front/', or '' for the unnamed camera."""
    return f'{camera}/' if camera else ''


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise; elsewhere a no-op)."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Perception:
    """
    Parameters, subscriptions, publishers and diagnostics of one perception node.

    Declares the node's parameters. `create_publisher` / `destroy_publisher` are the node's
    (lifecycle publishers for the managed node). `configure` raises ParameterError, naming
    the parameter. It is the worker's host (worker.WorkerHost).
    """

    def __init__(self, node, create_publisher, destroy_publisher):
        self.node = node
        self._create_publisher, self._destroy_publisher = create_publisher, destroy_publisher
        self._lock = threading.Lock()       # guards publishers and camera info
        self.worker = FrameWorker(self)
        self.model_facts: ModelFacts | None = None
        self.cameras: tuple[str, ...] = ('',)
        self._camera_params: list[str] = []     # `<camera>.<option>`, declared at configure
        self.camera_info: dict[str, CameraInfo] = {}
        # by topic below ~/ ('labels', 'front/labels', 'front/masks/car'), and 'diagnostics'
        self.pubs: dict[str, object] = {}
        self.subs: dict[str, object] = {}       # by input topic ('image', 'front/image')
        self._timers: list = []
        self.active = False
        declare(node)       # then watch: a set during declaration has nothing to check against
        node.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def log(self):
        return self.node.get_logger()

    @property
    def pipeline(self) -> FramePipeline | None:
        return self.worker.pipeline

    @property
    def predictor(self) -> Predictor | None:
        return self.worker.pipeline.predictor if self.worker.pipeline else None

    @property
    def last_gate_source(self) -> str | None:
        """Return the gate of the first camera's last frame."""
        streams = list(self.worker.streams.values())
        return streams[0].last_gate_source if streams else None

    # -- transitions --------------------------------------------------------------------

    def configure(self) -> None:
        """Read the parameters, load the model, create the publishers."""
        p = self._values()
        if problem := check(p):
            raise problem
        path = p['model_path'] or bundled_checkpoint()       # a name resolves on loading
        if not path:
            raise ParameterError('model_path', 'no model: this build ships no bundled model')
        self.cameras = camera_names(p)
        self.worker.start_torch()
        try:
            self._camera_params = declare_cameras(self.node, self.cameras)
            p = self._values()
            if problem := check(p):         # the cameras' own values
                raise problem
            self._configure(p, path)
        except BaseException:
            self.worker.attach(None)
            self.worker.stop_torch()
            self._undeclare_cameras()
            raise

    def _values(self) -> dict:
        """Every parameter's value, the cameras' own included."""
        return {name: self.node.get_parameter(name).value
                for name in (*PARAMETERS, *self._camera_params)}

    def _undeclare_cameras(self) -> None:
        for name in self._camera_params:
            self.node.undeclare_parameter(name)
        self._camera_params = []

    def _configure(self, p: dict, path) -> None:
        """Configure with the torch thread running."""
        # the dynamic options are applied per frame, after the model-dependent check
        options = replace(PredictorOptions.from_values(p), loops=-1, gate_source='auto',
                          hard_gate=False)
        predictor = self.worker.on_torch(self._load, path, options, p['num_threads'])
        # one pipeline per camera: each pairs its own depth; all share the predictor
        pipelines = {camera: FramePipeline(
            predictor, decode_partner, sync_slop=camera_values(p, camera)['sync_slop'],
            depth_timeout=p['depth_timeout'], queue_size=max(10, p['input_queue_depth']))
            for camera in self.cameras}
        facts = ModelFacts(frozenset(pipelines[self.cameras[0]].class_ids),
                           bool(predictor.cfg.recurrent), predictor.gates)
        if problem := check(p, facts):
            raise problem
        self.model_path, self.params, self.model_facts = str(path), p, facts
        self.camera_info = {}
        self.worker.attach(pipelines, self._settings(p, predictor), p['max_batch'])
        # At a set inference size this also compiles the network for what frames will need
        # (else a frame would wait for it); at the cameras' own size only their frames can.
        self.worker.on_torch(predictor.warm_up,
                             min(len(self.cameras), p['max_batch'] or len(self.cameras)),
                             bool(p['inference_height']))

        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        self.pubs = {}
        for camera in self.cameras:
            for name in OUTPUTS + ('frame_info',):
                # frame_info: per frame, with the input's header: gate used, loops, timings
                kind = {'points': PointCloud2, 'frame_info': DiagnosticArray}.get(name, Image)
                topic = prefix(camera) + name
                self.pubs[topic] = self._create_publisher(kind, f'~/{topic}', out_qos)
        self.pubs['diagnostics'] = self._create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._add_mask_publishers(p['mask_classes'])
        cameras = f", cameras {', '.join(self.cameras)}" if self.cameras != ('',) else ''
        self.log.info(f'model {self.model_path} on {predictor.device}, '
                      f'{len(predictor.info.class_names)} classes, loops {self.loops}{cameras}')

    @staticmethod
    def _load(path, options: PredictorOptions, num_threads: int) -> Predictor:
        """Load the model (on the torch thread)."""
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            return Predictor.from_checkpoint(path, **options.predictor_kwargs())
        except (CheckpointError, OSError) as e:
            raise ParameterError('model_path', str(e)) from None

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
        self.subs = {}
        for camera in self.cameras:
            self._subscribe(camera, camera_values(p, camera), image_qos, in_qos)
        self._timers = [self.node.create_timer(p['diagnostics_period'],
                                               self._publish_diagnostics)]
        self._name_checks = 0
        self._name_check = self.node.create_timer(2.0, self._check_duplicate_name)
        self._timers.append(self._name_check)
        self.worker.start()
        self.active = True

    def _subscribe(self, camera: str, p: dict, image_qos: QoSProfile,
                   in_qos: QoSProfile) -> None:
        """Subscribe to one camera's inputs, with its transports."""
        at = prefix(camera)
        # image_transport's topics hang below the resolved (remapped) base topic.
        image, depth = at + 'image', at + 'depth'
        image_type = depth_type = Image
        if p['image_transport'] == 'compressed':
            image, image_type = self.node.resolve_topic_name(image) + '/compressed', \
                CompressedImage
        depth_kind = 'depth'
        if p['depth_transport'] == 'compressedDepth':
            depth, depth_type = self.node.resolve_topic_name(depth) + '/compressedDepth', \
                CompressedImage
            depth_kind = 'compressedDepth'
        for role, msg_type, topic, callback, qos in (
                ('image', image_type, image, lambda m: self.worker.image(m, camera), image_qos),
                ('depth', depth_type, depth, self._on_depth(camera, depth_kind), in_qos),
                ('disparity', DisparityImage, at + 'disparity',
                 self._on_depth(camera, 'disparity'), in_qos),
                ('camera_info', CameraInfo, at + 'camera_info',
                 lambda m: self._on_camera_info(camera, m), in_qos)):
            self.subs[at + role] = self.node.create_subscription(
                msg_type, topic, callback, qos, event_callbacks=self._qos_events(camera, role))

    def deactivate(self) -> None:
        """Stop processing and publishing; keep the model and the publishers."""
        self.active = False
        self.worker.stop()
        for sub in self.subs.values():
            self.node.destroy_subscription(sub)
        for timer in self._timers:
            self.node.destroy_timer(timer)
        self.subs, self._timers = {}, []

    def cleanup(self) -> None:
        """Destroy the publishers, free the model (and the CUDA cache), end the torch thread."""
        for pub in self.pubs.values():
            self._destroy_publisher(pub)
        self.pubs = {}
        cuda = self.predictor is not None and self.predictor.device.type == 'cuda'
        self.worker.attach(None)
        self.model_facts = None
        self.worker.stop_torch()
        self._undeclare_cameras()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        _return_freed_memory()

    def close(self) -> None:
        """Stop the worker and end the torch thread: the node is being destroyed."""
        self.worker.stop()
        self.worker.stop_torch()

    def stop_worker(self) -> None:
        """Stop inference; once this returns no frame will be published."""
        self.worker.stop()

    # -- parameters ---------------------------------------------------------------------

    def _settings(self, p: dict, predictor: Predictor) -> dict[str, FrameSettings]:
        """Apply the dynamic parameters that are not per frame; return each camera's."""
        self.loops = predictor.loops if p['loops'] < 0 else p['loops']
        predictor.hard_gate = p['hard_gate']
        self.publish_points = bool(p['publish_points'])
        shared = FrameSettings(
            gate=p['gate_source'], loops=self.loops, budget_ms=p['latency_budget_ms'] or None,
            outputs=frozenset(n for n in IMAGE_OUTPUTS if p[f'publish_{n}']),
            labels_color_alpha=p['labels_color_alpha'],
            mask_classes=mask_names(p['mask_classes']))
        return {camera: replace(shared, depth_unit_scale=camera_values(
            p, camera)['depth_unit_scale']) for camera in self.cameras}

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {x.name: x.value for x in params}
        configured = self.predictor is not None
        static = [name for name in changes if is_static(name)]
        if static and configured:
            return SetParametersResult(successful=False,
                                       reason=f'{static[0]} is read at configure: restart '
                                       'the node (managed: cleanup, set it, configure)')
        if configured and self.cameras != ('',) and (
                shared := [name for name in changes if name in CAMERA_OPTIONS]):
            own = ', '.join(camera_parameter(c, shared[0]) for c in self.cameras)
            return SetParametersResult(successful=False,
                                       reason=f'{shared[0]}: each camera has its own ({own})')
        current = self._values()
        current.update(changes)
        if problem := check(current, self.model_facts):
            return SetParametersResult(successful=False, reason=str(problem))
        if not configured:          # read at configure
            return SetParametersResult(successful=True)
        # publishers first: a frame that sees the new mask classes finds theirs
        self._add_mask_publishers(current['mask_classes'])
        settings = self._settings(current, self.predictor)
        for camera in self.cameras:
            self.worker.update(camera, settings[camera],
                               camera_values(current, camera)['sync_slop'],
                               current['depth_timeout'])
        return SetParametersResult(successful=True)

    def _add_mask_publishers(self, classes: list[str]) -> None:
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        with self._lock:
            for camera in self.cameras:
                for name in mask_names(classes):
                    topic = f'{prefix(camera)}masks/{name}'
                    if topic not in self.pubs:
                        pub = self._create_publisher(Image, f'~/{topic}', qos)
                        if self.active and hasattr(pub, 'on_activate'):
                            pub.on_activate(None)       # a lifecycle publisher born active
                        self.pubs[topic] = pub

    def _qos_events(self, camera: str, role: str) -> SubscriptionEventCallbacks:
        health = self.worker.streams[camera].health
        topic = prefix(camera) + role

        def incompatible(event):
            self.log.warning(
                f"a publisher on '{topic}' has incompatible QoS (policy "
                f'{event.last_policy_kind}); no messages will arrive from it. Set '
                'input_reliability to match it.')
            health.count('incompatible_qos')     # after the warning: a reader sees both

        def lost(event):                    # samples DDS knows it missed, e.g. a lost fragment
            health.lost(event.total_count)
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

    def _on_depth(self, camera: str, kind: str):
        def store(msg) -> None:
            self.worker.depth(msg, (kind, msg), camera)
        return store

    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        with self._lock:
            self.camera_info[camera] = msg

    # -- the worker's host ----------------------------------------------------------------

    decode_rgb = staticmethod(decode_rgb)

    def focal_px(self, camera: str, width: int) -> float | None:
        with self._lock:
            return camera_focal(self.camera_info.get(camera), width)

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def depth_expected(self, camera: str) -> bool:
        return any(self.subs[prefix(camera) + t].get_publisher_count()
                   for t in ('depth', 'disparity'))

    def publish(self, camera: str, msg, frame: Frame, settings: FrameSettings) -> None:
        at = prefix(camera)
        with self._lock:
            pubs, info = dict(self.pubs), self.camera_info.get(camera)
        header = msg.header
        for name, (array, encoding) in self.pipeline.images(frame, settings).items():
            pubs[at + name].publish(array_to_msg(array, encoding, header))
        if self.publish_points:
            if info is None:
                self.worker.warn(at + 'points', f'~/{at}points needs {at}camera_info; none '
                                 'received yet')
            else:
                pubs[at + 'points'].publish(depth_to_cloud(
                    FramePipeline.fused_depth(frame), frame.rgb, frame.prediction.labels, info,
                    header))

    def publish_info(self, camera: str, msg, frame: Frame, milliseconds: dict[str, float],
                     batch: int) -> None:
        pred = frame.prediction
        status = DiagnosticStatus(name='depthgate_ros: frame', level=DiagnosticStatus.OK,
                                  message=pred.gate_source, hardware_id=camera)
        status.values = [KeyValue(key='gate_source', value=pred.gate_source),
                         KeyValue(key='loops', value=str(pred.loops)),
                         KeyValue(key='batch', value=str(batch))] + [
            KeyValue(key=k, value=f'{v:.2f}') for k, v in milliseconds.items()]
        self.pubs[prefix(camera) + 'frame_info'].publish(
            DiagnosticArray(header=msg.header, status=[status]))

    def info(self, text: str) -> None:
        self.log.info(text)

    def warn(self, text: str) -> None:
        self.log.warning(text)

    def error(self, text: str) -> None:
        self.log.error(text)

    # -- health -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        """Counters since configure, summed over the cameras."""
        return self.worker.stats()

    def diagnostics(self) -> dict:
        """Return the node's total: rates, latencies, counters (one camera: that camera's)."""
        return self.camera_diagnostics()['']

    def camera_diagnostics(self) -> dict[str, dict]:
        """Each named camera's diagnostics by name, and the node's total under ''."""
        streams = list(self.worker.streams.values())
        common = {'device': str(self.predictor.device), 'loops': self.loops}
        parts = {s.name: s.health.diagnostics() for s in streams}
        gates = {s.name: s.last_gate_source or 'none yet' for s in streams}
        if self.cameras == ('',):
            return {'': {**parts[''], 'gate_source': gates[''], **common}}
        out = {name: {**d, 'gate_source': gates[name], **common} for name, d in parts.items()}
        out[''] = {**total(list(parts.values()), [s.health for s in streams]),
                   'gate_source': ', '.join(f'{n} {g}' for n, g in gates.items()), **common}
        return out

    def _check_transport(self) -> None:
        for stream in self.worker.streams.values():
            image = self.subs[prefix(stream.name) + 'image']
            problem = stream.health.transport_problem(image.get_publisher_count())
            if problem is None:
                continue
            got, lost = problem
            self.log.warning(
                f"images on '{image.topic_name}' are not arriving: {got} received and {lost} "
                f'reported lost in transport in the last {SILENCE_WARN_S:.0f} s although a '
                'publisher is matched. Likely cause: images larger than the DDS shared-memory '
                f'segment, sent best effort over fragmented UDP; see the {README_DDS}.')

    def _publish_diagnostics(self) -> None:
        self._check_transport()
        array = DiagnosticArray(status=[
            _status(camera_status_name(name) if name else STATUS_NAME, d)
            for name, d in sorted(self.camera_diagnostics().items())])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.pubs['diagnostics'].publish(array)


def _status(name: str, d: dict) -> DiagnosticStatus:
    """Return one /diagnostics entry: a level and message from the counts, every value."""
    status = DiagnosticStatus(name=name, hardware_id=d['device'])
    errors = d['errors'] + d['depth_errors'] + d['oom']
    if d['received'] == 0:
        status.level, status.message = DiagnosticStatus.WARN, 'no images received'
    elif errors:
        status.level, status.message = DiagnosticStatus.WARN, f'{errors} errors'
    else:
        status.level, status.message = DiagnosticStatus.OK, f"gate {d['gate_source']}"
    status.values = [KeyValue(key=k, value=f'{v:.2f}' if isinstance(v, float) else str(v))
                     for k, v in d.items()]
    return status
