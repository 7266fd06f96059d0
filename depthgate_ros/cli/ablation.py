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
depthgate-ablation: paper Table 2 / supplementary Table 1 rows on the synthetic scenes.

    depthgate-ablation --config config/ablation_synthetic.yaml

Every variant starts from the same trained baseline checkpoint and gets the same number of
iterations (the loop rows continue from the row they name, as the paper trains them one
after another); each is then evaluated on held-out synthetic frames that no run trained on.
Runs resume where they stopped, so the study can be spread over several sessions.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
import sys
import time

import yaml

from ..evaluation import evaluate_dataset
from ..inference import Predictor, resolve_device
from ..model.config import DEPTH_GATES
from ..training.config import ConfigError, load_config, StageConfig
from ..training.datasets import SYNTHETIC_VAL_FIRST_SEED, SyntheticStreetDataset
from ..training.distributed import DistContext
from ..training.engine import run_training

log = logging.getLogger('depthgate_ros.ablation')


def run_variant(base, variant: dict, out: Path, iterations: int, init_from: Path,
                ctx: DistContext, gating_init: str = 'scratch') -> tuple[Path, float]:
    cfg = load_config(base)
    cfg.gating_init = gating_init
    cfg.output_dir = str(out / variant['name'])
    cfg.init_from = str(init_from)
    cfg.stages = [StageConfig(name='train', iterations=iterations, model=variant['model'],
                              loss=variant.get('loss', {'seg': 1.0, 'depth_reg': 0.0,
                                                        'depth_cls': 0.0}))]
    cfg.val_every = 0
    stamp = out / variant['name'] / 'seconds.txt'
    t0 = time.perf_counter()
    path = run_training(cfg, ctx, resume=True)
    spent = time.perf_counter() - t0 + (float(stamp.read_text()) if stamp.is_file() else 0.0)
    stamp.write_text(f'{spent:.1f}')
    return path, spent


def table(rows: list[dict], frames: int) -> str:
    lines = ['| variant | gate at test | mIoU | pixel acc. | iIoU (person, car) | depth delta1 | '
             'AbsRel | train time (min) |', '|---|---|---|---|---|---|---|---|']

    def f(v):
        return '-' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.3f}'
    for r in rows:
        m = r['metrics']['final']
        lines.append(f"| {r['name']} | {r['metrics']['gate_source']} | {f(m['miou'])} | "
                     f"{f(m['pixel_accuracy'])} | {f(m['miiou'])} | {f(m['depth']['delta1'])} | "
                     f"{f(m['depth']['abs_rel'])} | {r['train_seconds'] / 60:.1f} |")
    lines.append(f'\nHeld-out synthetic frames: {frames} (seeds {SYNTHETIC_VAL_FIRST_SEED}+).')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-ablation',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('--config', required=True)
    parser.add_argument('--only', nargs='*', help='run just these variants')
    parser.add_argument('--init-from', help="override the config's baseline checkpoint")
    parser.add_argument('--output-dir', help="override the config's output_dir")
    parser.add_argument('--gating-init', choices=('scratch', 'context'),
                        help="override the config's gating_init (how new gating modules start)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(name)s: %(message)s')
    spec_path = Path(args.config)
    try:
        spec = yaml.safe_load(spec_path.read_text())
        base = (spec_path.parent / spec['base_config']).resolve()
        out = Path(args.output_dir or spec['output_dir'])
        iterations = int(spec['iterations'])
        baseline = Path(args.init_from or spec['init_from'])
        variants, frames = spec['variants'], int(spec.get('eval_frames', 100))
        size = spec.get('eval_size', [128, 256])
        gating_init = args.gating_init or spec.get('gating_init', 'scratch')
        if not baseline.is_file():
            raise ConfigError(f'init_from checkpoint not found: {baseline} (train the '
                              'baseline stage first)')
    except (OSError, KeyError, TypeError, yaml.YAMLError, ConfigError) as e:
        print(f'depthgate-ablation: bad ablation config {spec_path}: {e}', file=sys.stderr)
        return 2
    ctx = DistContext(device=resolve_device(spec.get('device', 'auto')))
    val = SyntheticStreetDataset(frames, SYNTHETIC_VAL_FIRST_SEED, size)
    rows = []
    for v in variants:
        if args.only and v['name'] not in args.only:
            continue
        parent = v.get('init_from_variant')
        start = out / parent / 'model.pt' if parent else baseline
        path, seconds = run_variant(base, v, out, iterations, start, ctx, gating_init)
        test_gate = v.get('test_gate')
        predictor = Predictor.from_checkpoint(path, device=str(ctx.device),
                                              gate=test_gate or 'auto')
        metrics = evaluate_dataset(predictor, val, gate=test_gate,
                                   sensor_depth='exact' if test_gate in DEPTH_GATES else None)
        rows.append({'name': v['name'], 'metrics': metrics, 'train_seconds': seconds,
                     'checkpoint': str(path)})
        log.info('%s: mIoU %.4f', v['name'], metrics['final']['miou'])
        (out / 'results.json').write_text(json.dumps(rows, indent=2))
        (out / 'results.md').write_text(table(rows, frames))
    print(table(rows, frames))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
