"""depthgate-pack-model: a checkpoint made ready to ship (float16 weights, no training state).

    depthgate-pack-model runs/synthetic/model.pt depthgate_ros/weights/default.pt
"""
from __future__ import annotations

import argparse
import sys

from .model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="depthgate-pack-model", description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--note", default="", help="added to the provenance")
    args = parser.parse_args(argv)
    try:
        model, info, extra = load_checkpoint(args.src)
    except CheckpointError as e:
        print(f"depthgate-pack-model: {e}", file=sys.stderr)
        return 2
    info.provenance = {**info.provenance, "packed_from": str(args.src),
                       "trained_stage": extra.get("stage"), "iteration": extra.get("iteration"),
                       "note": args.note}
    path = save_checkpoint(args.dst, model, info, half=True)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
