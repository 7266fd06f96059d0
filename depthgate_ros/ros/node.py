"""perception_node: depth-gated recurrent segmentation on a camera stream.

Subscribes (relative names, remappable): `image` (sensor_msgs/Image), optional `depth`
(REP 118 Image), `disparity` (stereo_msgs/DisparityImage) and `camera_info`. Publishes under
the node's namespace `~/labels`, `~/labels_color`, `~/depth`, `~/confidence`, `~/gate`,
`~/masks/<class>`, `~/points` and `~/frame_info` (gate source, loops and timings of the
frame), each with the input image's header, and `/diagnostics`.

Subscription callbacks only store messages: inference runs on a worker thread that always
takes the newest image (at most one waits; replaced ones are counted as dropped), so a slow
model never builds a backlog of stale frames.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from ..inference import Predictor
from ..model.checkpoint import CheckpointError
from ..model.depth_bins import disparity_to_depth
from ..visualize import colorize_labels, palette
from ..weights import bundled_checkpoint
from .image_codec import ImageDecodeError, array_to_msg, depth_from_msg, rgb_from_msg
from .pairing import NS, DepthPairing
from .pointcloud import depth_to_cloud

OUTPUTS = ("labels", "labels_color", "depth", "confidence", "gate", "points")
# Parameters read once at start; changing them needs a restart.
STATIC = ("model_path", "device", "fp16", "channels_last", "num_threads", "inference_height",
          "inference_width", "input_reliability", "input_queue_depth", "tta_flip",
          "tta_scales", "depth_blur_sigma", "diagnostics_period")


def _desc(text: str, *, lo=None, hi=None, step=None, read_only=False, choices=None):
    d = ParameterDescriptor(description=text, read_only=read_only)
    if choices:
        d.additional_constraints = "one of: " + ", ".join(choices)
    if isinstance(lo, int) and isinstance(hi, int):
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step or 1)]
    elif lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                     step=float(step or 0.0))]
    return d


PARAMETERS = {
    # name: (default, descriptor)
    "model_path": ("", _desc("checkpoint file; empty = the model bundled with the package")),
    "device": ("auto", _desc("auto | cpu | cuda[:N]; auto picks CUDA when present")),
    "fp16": (False, _desc("float16 autocast (CUDA only)")),
    "channels_last": (False, _desc("channels-last memory format")),
    "num_threads": (0, _desc("torch CPU threads, 0 = torch's default; bound it on a robot "
                             "running other nodes", lo=0, hi=256)),
    "inference_height": (0, _desc("inference resolution, 0 = the input's own", lo=0, hi=4096)),
    "inference_width": (0, _desc("inference resolution, 0 = the input's own", lo=0, hi=8192)),
    "loops": (-1, _desc("recurrent loops, -1 = the model's default (dynamic)", lo=-1, hi=8)),
    "latency_budget_ms": (0.0, _desc("anytime refinement: run only the recurrent loops that "
                                     "fit in this many ms per frame, 0 = always `loops` "
                                     "(dynamic; needs TTA off)", lo=0.0, hi=10000.0)),
    "hard_gate": (False, _desc("gate on the most likely depth bin only (predicted or sensor), "
                               "so the gating module runs sparse (dynamic)")),
    "gate_source": ("auto", _desc("auto = sensor depth when paired, else predicted (dynamic)",
                                  choices=("auto", "sensor", "predicted", "average"))),
    "sync_slop": (0.05, _desc("max stamp difference (s) for an image/depth pair (dynamic)",
                              lo=0.0, hi=1.0)),
    "depth_timeout": (0.5, _desc("wait at most this long (s) for depth; silent depth for "
                                 "this long means monocular (dynamic)", lo=0.0, hi=10.0)),
    "depth_unit_scale": (0.001, _desc("metres per unit of 16UC1 depth (dynamic)",
                                      lo=1e-6, hi=1.0)),
    "input_reliability": ("best_effort", _desc("QoS reliability of the inputs",
                                               choices=("best_effort", "reliable"))),
    "input_queue_depth": (5, _desc("QoS history depth of depth, disparity and camera_info "
                                   "(images: 1, only the newest is ever processed)",
                                   lo=1, hi=100)),
    "publish_labels": (True, _desc("publish ~/labels (dynamic)")),
    "publish_labels_color": (True, _desc("publish ~/labels_color (dynamic)")),
    "publish_depth": (True, _desc("publish ~/depth (dynamic)")),
    "publish_confidence": (False, _desc("publish ~/confidence (dynamic)")),
    "publish_gate": (True, _desc("publish ~/gate (dynamic)")),
    "publish_points": (False, _desc("publish ~/points, needs camera_info (dynamic)")),
    "labels_color_alpha": (0.0, _desc("blend of the image over ~/labels_color (dynamic)",
                                      lo=0.0, hi=1.0)),
    "mask_classes": ([""], _desc("class names published as ~/masks/<name> (dynamic); "
                                 "spaces become underscores in topic names")),
    "tta_flip": (False, _desc("flip test-time augmentation")),
    "tta_scales": ([1.0], _desc("test-time scales")),
    "depth_blur_sigma": (0.0, _desc("Gaussian smoothing of predicted depth (pixels)",
                                    lo=0.0, hi=50.0)),
    "diagnostics_period": (1.0, _desc("seconds between /diagnostics messages", lo=0.1,
                                      hi=60.0)),
}


def topic_name(class_name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in class_name.strip())


def stamp_ns(header) -> int:
    return header.stamp.sec * NS + header.stamp.nanosec


class PerceptionNode(Node):
    def __init__(self, **kwargs):
        super().__init__("perception_node", **kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if p["num_threads"] > 0:
            torch.set_num_threads(p["num_threads"])
        path = p["model_path"] or bundled_checkpoint()
        if not path:
            raise CheckpointError("no model: set the model_path parameter (this build ships "
                                  "no bundled model)")
        size = (p["inference_height"], p["inference_width"]) if p["inference_height"] and \
            p["inference_width"] else None
        self.predictor = Predictor.from_checkpoint(
            path, device=p["device"], fp16=p["fp16"], channels_last=p["channels_last"],
            size=size, tta_scales=p["tta_scales"], tta_flip=p["tta_flip"],
            depth_blur_sigma=p["depth_blur_sigma"])
        self.model_path = str(path)
        self.lut = palette(self.predictor.info.colors)
        self.class_ids = {topic_name(n): i for i, n in enumerate(self.predictor.info.class_names)}
        self._lock = threading.Lock()       # guards settings, pairing, camera info, stats
        self._apply_dynamic(p)
        if self.budget_ms and (p["tta_flip"] or list(p["tta_scales"]) != [1.0]):
            raise ValueError("latency_budget_ms needs test-time augmentation off (tta_flip, "
                             "tta_scales)")
        self.pairing = DepthPairing(p["sync_slop"], p["depth_timeout"],
                                    queue_size=max(10, p["input_queue_depth"]))
        self.camera_info: CameraInfo | None = None
        self._warm_up()

        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        self.pubs = {name: self.create_publisher(
            PointCloud2 if name == "points" else Image, f"~/{name}", out_qos)
            for name in OUTPUTS}
        self.mask_pubs: dict[str, object] = {}
        self._update_mask_publishers()
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Per frame, with the input's header: which gate was used, loops, timings.
        self.frame_info_pub = self.create_publisher(DiagnosticArray, "~/frame_info", out_qos)

        reliability = ReliabilityPolicy.RELIABLE if p["input_reliability"] == "reliable" \
            else ReliabilityPolicy.BEST_EFFORT
        in_qos = QoSProfile(depth=p["input_queue_depth"], history=HistoryPolicy.KEEP_LAST,
                            reliability=reliability)
        # Images: history 1. Only the newest is processed, and a deeper reader queue would
        # hand the executor stale frames whenever inference starves it of CPU.
        image_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        self.subs = [self.create_subscription(msg_type, topic, callback, qos,
                                              event_callbacks=self._qos_events(topic))
                     for msg_type, topic, callback, qos in (
                         (Image, "image", self._on_image, image_qos),
                         (Image, "depth", self._on_depth, in_qos),
                         (DisparityImage, "disparity", self._on_disparity, in_qos),
                         (CameraInfo, "camera_info", self._on_camera_info, in_qos))]

        self._slot: tuple[Image, int] | None = None
        self._wake = threading.Condition()
        self._stop = False
        self.stats = {"received": 0, "processed": 0, "dropped": 0, "errors": 0,
                      "depth_errors": 0, "oom": 0, "stamp_warnings": 0}
        self._window: deque = deque(maxlen=200)     # (finish time, latency s, model s)
        self._received_times: deque = deque(maxlen=400)
        self.last_gate_source: str | None = None
        self._last_stamp: int | None = None
        self._throttle: dict[str, float] = {}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self._worker = threading.Thread(target=self._run, name="depthgate-inference",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model {self.model_path} on {self.predictor.device}, "
            f"{len(self.predictor.info.class_names)} classes, loops {self.loops}")

    # -- parameters ---------------------------------------------------------------------

    def _apply_dynamic(self, p: dict) -> None:
        self.loops = self.predictor.loops if p["loops"] < 0 else p["loops"]
        self.budget_ms = p["latency_budget_ms"] or None
        self.predictor.hard_gate = p["hard_gate"]
        self.gate_source = p["gate_source"]
        self.depth_unit_scale = p["depth_unit_scale"]
        self.enabled = {name: bool(p[f"publish_{name}"]) for name in OUTPUTS}
        self.alpha = p["labels_color_alpha"]
        self.mask_classes = [topic_name(c) for c in p["mask_classes"] if c.strip()]

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {x.name: x.value for x in params}
        for name, value in changes.items():
            if name in STATIC:
                return SetParametersResult(successful=False,
                                           reason=f"{name} is read at start; restart the node")
            if name == "gate_source" and value not in ("auto", "sensor", "predicted",
                                                       "average"):
                return SetParametersResult(successful=False, reason=f"gate_source {value!r} "
                                           "is not one of auto, sensor, predicted, average")
            if name == "latency_budget_ms" and value > 0 and (
                    self.predictor.tta_flip or self.predictor.tta_scales != (1.0,)):
                return SetParametersResult(successful=False, reason="a latency budget needs "
                                           "test-time augmentation off (tta_flip, tta_scales)")
            if name == "loops" and value > 0 and not self.predictor.cfg.recurrent:
                return SetParametersResult(successful=False,
                                           reason="this model has no recurrent module")
            if name == "mask_classes":
                unknown = [c for c in value if c.strip() and topic_name(c) not in
                           self.class_ids]
                if unknown:
                    return SetParametersResult(successful=False,
                                               reason=f"unknown classes {unknown}")
        current = {name: self.get_parameter(name).value for name in PARAMETERS}
        current.update(changes)
        with self._lock:
            self._apply_dynamic(current)
            self.pairing.configure(current["sync_slop"], current["depth_timeout"])
        if "mask_classes" in changes:
            self._update_mask_publishers()
        return SetParametersResult(successful=True)

    def _update_mask_publishers(self) -> None:
        unknown = [c for c in self.mask_classes if c not in self.class_ids]
        if unknown:
            self.get_logger().error(f"mask_classes: unknown classes {unknown}; known: "
                                    f"{sorted(self.class_ids)}")
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        with self._lock:
            for name in self.mask_classes:
                if name in self.class_ids and name not in self.mask_pubs:
                    self.mask_pubs[name] = self.create_publisher(Image, f"~/masks/{name}", qos)

    def _qos_events(self, topic: str) -> SubscriptionEventCallbacks:
        def incompatible(event):
            self.get_logger().warning(
                f"a publisher on '{topic}' has incompatible QoS (policy "
                f"{event.last_policy_kind}); no messages will arrive from it. Set "
                "input_reliability to match it.")
        return SubscriptionEventCallbacks(incompatible_qos=incompatible)

    # -- callbacks: store only ------------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_image(self, msg: Image) -> None:
        with self._wake:
            self.stats["received"] += 1
            self._received_times.append(time.monotonic())
            if self._slot is not None:
                self.stats["dropped"] += 1
            self._slot = (msg, self._now_ns(), time.monotonic())
            self._wake.notify()

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self.pairing.add(stamp_ns(msg.header), ("depth", msg), self._now_ns())
        with self._wake:
            self._wake.notify()

    def _on_disparity(self, msg: DisparityImage) -> None:
        with self._lock:
            self.pairing.add(stamp_ns(msg.header), ("disparity", msg), self._now_ns())
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
                self._process(msg, arrival_ns, arrival_mono)
            except Exception as e:  # never let one frame kill the node
                self.stats["errors"] += 1
                self._warn("frame", f"frame skipped: {type(e).__name__}: {e}")

    def _partner(self, stamp: int, arrival_ns: int):
        """The paired depth message, waiting for it while depth flows (bounded by
        depth_timeout); None = monocular. Gives up early when a newer image arrives."""
        while True:
            with self._lock:
                match = self.pairing.match(stamp) if stamp else None
                wait = match is None and stamp and self.pairing.should_wait(
                    arrival_ns, self._now_ns())
            if not wait:
                return match.item if match else None
            with self._wake:
                if self._slot is not None or self._stop:
                    return None
                self._wake.wait(timeout=0.005)

    def _process(self, msg: Image, arrival_ns: int, arrival_mono: float) -> None:
        t_decode = time.monotonic()
        try:
            rgb = rgb_from_msg(msg)
        except ImageDecodeError as e:
            self.stats["errors"] += 1
            self._warn("decode", f"image dropped: {e}")
            return
        decode_s = time.monotonic() - t_decode
        stamp = stamp_ns(msg.header)
        if stamp == 0:
            self.stats["stamp_warnings"] += 1
            self._warn("stamp", "image stamp is zero: cannot pair depth, running monocular")
        elif self._last_stamp is not None and stamp < self._last_stamp:
            self.stats["stamp_warnings"] += 1
            self._warn("stamp", "image stamps went backwards (bag restarted?): depth pairing "
                       "reset")
            with self._lock:
                self.pairing.reset()
        self._last_stamp = stamp or self._last_stamp
        with self._lock:
            gate_pref, loops, budget = self.gate_source, self.loops, self.budget_ms
            enabled, alpha = dict(self.enabled), self.alpha
            masks = {n: self.mask_pubs[n] for n in self.mask_classes if n in self.mask_pubs}
            info, unit = self.camera_info, self.depth_unit_scale
        depth = None
        if gate_pref in ("auto", "sensor"):
            partner = self._partner(stamp, arrival_ns)
            if partner is not None:
                t_depth = time.monotonic()
                depth = self._decode_depth(partner, unit)
                decode_s += time.monotonic() - t_depth
        gate = "sensor" if depth is not None else (
            "predicted" if gate_pref in ("auto", "sensor") else gate_pref)
        if self.predictor.cfg.gate_source in ("none", "attention", "average"):
            gate = None                       # the model's own gate; sensor depth unused
        t0 = time.monotonic()
        try:
            pred = self.predictor.predict(rgb, depth, loops=loops, gate=gate,
                                          budget_ms=budget)
        except torch.cuda.OutOfMemoryError:
            self.stats["oom"] += 1
            torch.cuda.empty_cache()
            self._warn("oom", "CUDA out of memory: frame skipped, cache freed")
            return
        model_s = time.monotonic() - t0
        self._publish(msg, rgb, pred, depth, enabled, alpha, masks, info)
        done = time.monotonic()
        # decode_ms: image (and depth) conversion in; publish_ms: conversion out and publish;
        # latency_ms: arrival to published, including any wait for a depth partner.
        self._publish_frame_info(msg.header, pred, {
            "model_ms": model_s, "decode_ms": decode_s, "publish_ms": done - t0 - model_s,
            "latency_ms": done - arrival_mono})
        with self._lock:
            self.stats["processed"] += 1
            self._window.append((done, done - arrival_mono, model_s))
        if pred.gate_source != self.last_gate_source:
            self.get_logger().info(f"gate source: {self.last_gate_source} -> "
                                   f"{pred.gate_source}")
            self.last_gate_source = pred.gate_source

    def _decode_depth(self, partner, unit: float):
        kind, m = partner
        try:
            if kind == "depth":
                return depth_from_msg(m, unit)
            d = depth_from_msg(m.image)     # 32FC1 disparity in pixels
            if m.f <= 0 or m.t <= 0:
                raise ImageDecodeError(f"disparity with f={m.f}, T={m.t} cannot give depth")
            return disparity_to_depth(d, m.f, m.t)
        except ImageDecodeError as e:
            self.stats["depth_errors"] += 1
            self._warn("depth", f"{kind} ignored, running monocular: {e}")
            return None

    def _publish(self, msg, rgb, pred, depth, enabled, alpha, masks, info) -> None:
        header = msg.header
        if enabled["labels"]:
            enc = "mono8" if pred.labels.dtype == np.uint8 else "mono16"
            self.pubs["labels"].publish(array_to_msg(pred.labels, enc, header))
        if enabled["labels_color"]:
            img = colorize_labels(pred.labels, self.lut, rgb, alpha)
            self.pubs["labels_color"].publish(array_to_msg(img, "rgb8", header))
        if enabled["depth"]:
            self.pubs["depth"].publish(array_to_msg(pred.depth, "32FC1", header))
        if enabled["confidence"]:
            self.pubs["confidence"].publish(array_to_msg(pred.confidence, "32FC1", header))
        if enabled["gate"] and pred.gate is not None:
            self.pubs["gate"].publish(array_to_msg(pred.gate, "mono8", header))
        for name, pub in masks.items():
            mask = np.where(pred.labels == self.class_ids[name], 255, 0).astype(np.uint8)
            pub.publish(array_to_msg(mask, "mono8", header))
        if enabled["points"]:
            if info is None:
                self._warn("points", "~/points needs camera_info; none received yet")
            else:
                # Sensor depth where the frame has it, the network's estimate elsewhere.
                d = pred.depth if depth is None else np.where(np.isfinite(depth), depth,
                                                              pred.depth)
                self.pubs["points"].publish(depth_to_cloud(d, rgb, pred.labels, info, header))

    def _publish_frame_info(self, header, pred, seconds: dict[str, float]) -> None:
        status = DiagnosticStatus(name="depthgate_ros: frame", level=DiagnosticStatus.OK,
                                  message=pred.gate_source)
        status.values = [KeyValue(key="gate_source", value=pred.gate_source),
                         KeyValue(key="loops", value=str(pred.loops))] + [
            KeyValue(key=k, value=f"{v * 1e3:.2f}") for k, v in seconds.items()]
        self.frame_info_pub.publish(DiagnosticArray(header=header, status=[status]))

    def _warn(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._throttle.get(key, -1e9) >= period:
            self._throttle[key] = now
            self.get_logger().warning(text)

    # -- health -----------------------------------------------------------------------------

    def diagnostics(self) -> dict:
        now = time.monotonic()
        with self._lock:
            window = [w for w in self._window if now - w[0] <= 10.0]
            received = [t for t in self._received_times if now - t <= 10.0]
            stats = dict(self.stats)
        lat = np.array([w[1] for w in window]) * 1e3
        model = np.array([w[2] for w in window]) * 1e3
        span = 10.0
        return {
            "input_rate_hz": len(received) / span, "processed_rate_hz": len(window) / span,
            "latency_p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "latency_p95_ms": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
            "model_p50_ms": float(np.percentile(model, 50)) if len(model) else float("nan"),
            "gate_source": self.last_gate_source or "none yet",
            "device": str(self.predictor.device), "loops": self.loops, **stats}

    def _publish_diagnostics(self) -> None:
        d = self.diagnostics()
        status = DiagnosticStatus(name="depthgate_ros: perception_node",
                                  hardware_id=d["device"])
        errors = d["errors"] + d["depth_errors"] + d["oom"]
        if d["received"] == 0:
            status.level, status.message = DiagnosticStatus.WARN, "no images received"
        elif errors:
            status.level, status.message = DiagnosticStatus.WARN, f"{errors} errors"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"gate {d['gate_source']}"
        status.values = [KeyValue(key=k, value=f"{v:.2f}" if isinstance(v, float) else str(v))
                         for k, v in d.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def destroy_node(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        self._worker.join(timeout=5.0)
        super().destroy_node()

    def _warm_up(self) -> None:
        """One pass at start: allocations, cuDNN algorithm choice, lazy init."""
        self.predictor.predict(np.zeros((64, 64, 3), np.uint8))


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = PerceptionNode()
    except (CheckpointError, ValueError, OSError) as e:
        rclpy.logging.get_logger("perception_node").fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
