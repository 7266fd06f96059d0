"""depthgate-demo: the model on a bundled synthetic street sequence, pictures and figures out.

The first half of the sequence comes with sensor depth (the gate follows it), the second half
is RGB only (the gate falls back to the network's own monocular depth), as a robot whose depth
camera drops out would see it.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from .data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from .data.synthetic import Camera, render_sequence
from .inference import Predictor
from .metrics import DepthMetric, SegmentationMetric
from .model import DepthGatedNet, ModelConfig
from .model.checkpoint import ModelInfo
from .weights import bundled_checkpoint
from .visualize import (colorize_depth, colorize_gate, colorize_labels, palette, panel,
                        write_png)

log = logging.getLogger("depthgate_ros.demo")


def build_predictor(checkpoint: str | None, **options) -> tuple[Predictor, str]:
    path = Path(checkpoint) if checkpoint else bundled_checkpoint()
    if path is not None:
        return Predictor.from_checkpoint(path, **options), str(path)
    log.warning("no checkpoint given and no bundled model in this build: running an "
                "UNTRAINED network, so the pictures show the pipeline, not accuracy")
    model = DepthGatedNet(ModelConfig(channels=128, depth_channels=(64, 32)))
    return Predictor(model, ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS), **options), \
        "untrained (random initialisation)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="depthgate-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    parser.add_argument("--checkpoint", help="model file (default: the bundled model)")
    parser.add_argument("--frames", type=int, default=8, help="sequence length (default: 8)")
    parser.add_argument("--seed", type=int, default=7, help="street seed (default: 7)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--loops", type=int, default=None, help="recurrent loops (default: "
                        "the model's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    if args.frames < 1:
        parser.error("--frames must be >= 1")

    predictor, model_name = build_predictor(args.checkpoint, device=args.device,
                                            loops=args.loops)
    lut = palette(predictor.info.colors)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    camera = Camera(width=args.width, height=args.height, fx=560.0 * args.width / 512,
                    fy=560.0 * args.width / 512)
    seg = SegmentationMetric(len(predictor.info.class_names))
    depth_metric = DepthMetric()
    frames, latencies = [], []
    for frame in render_sequence(args.seed, args.frames, camera):
        i = frame.meta["index"]
        sensor = frame.depth if i < (args.frames + 1) // 2 else None
        t0 = time.perf_counter()
        pred = predictor.predict(frame.rgb, sensor)
        latencies.append(time.perf_counter() - t0)
        seg.update(pred.labels, frame.labels)
        depth_metric.update(pred.depth, frame.depth)
        pictures = [frame.rgb, colorize_labels(frame.labels, lut),
                    colorize_labels(pred.labels, lut, frame.rgb, 0.3),
                    colorize_depth(pred.depth),
                    colorize_depth(sensor) if sensor is not None else np.zeros_like(frame.rgb)]
        titles = ["image", "ground truth", f"labels (loop {pred.loops})", "predicted depth",
                  "sensor depth" if sensor is not None else "no sensor depth"]
        if pred.gate is not None:
            pictures.append(colorize_gate(pred.gate))
            titles.append(f"gate ({pred.gate_source})")
        name = f"frame_{i:04d}.png"
        write_png(out / name, panel(pictures, titles))
        frames.append({"index": i, "panel": name, "gate_source": pred.gate_source,
                       "sensor_depth": sensor is not None,
                       "latency_ms": round(latencies[-1] * 1e3, 2)})
        log.info("frame %d: gate %s, %.0f ms", i, pred.gate_source, latencies[-1] * 1e3)

    lat = np.array(latencies) * 1e3
    s, d = seg.compute(), depth_metric.compute()
    summary = {
        "model": model_name, "device": str(predictor.device), "frames": len(frames),
        "image_size": [args.height, args.width],
        # The first frame includes one-off warm-up (allocations, kernel selection).
        "latency_ms": {"p50": float(np.percentile(lat, 50)),
                       "p95": float(np.percentile(lat, 95)), "first": float(lat[0])},
        "fps": float(1e3 / np.median(lat)),
        "miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"], "depth_delta1": d["delta1"],
        "depth_abs_rel": d["abs_rel"], "per_frame": frames,
    }
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")
    print(f"wrote {len(frames)} panels and summary.json to {out}/ "
          f"(latency p50 {summary['latency_ms']['p50']:.0f} ms, mIoU {s['miou']:.3f}, "
          f"model: {model_name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
