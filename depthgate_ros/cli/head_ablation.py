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
depthgate-head-ablation: paper Table 2 rows as heads on one frozen network's features.

    depthgate-head-ablation --config config/ablation_heads.yaml [key=value ...]

Caches the frozen network's features of the training and held-out frames (once,
resumable), trains every row's head from scratch with each of its seeds (a finished run is
skipped, so the study can be spread over sessions), and writes results.md / results.json:
mIoU with its spread over seeds, the paired difference to the baseline with a bootstrap
interval over frames, IoU near / middle / far, per-class IoU, the gate's branch per true depth
bin and what each branch does on its own.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import logging
import math
from pathlib import Path
import sys

import numpy as np
import torch

from ..data.cityscapes import DatasetError
from ..data.labels import cover_matrix, model_to_dataset
from ..data.sensors import sensor_from_config
from ..model.checkpoint import CheckpointError, load_checkpoint
from ..training.config import ConfigError, HeadAblationConfig, load_head_ablation
from ..training.datasets import build_dataset, SYNTHETIC_VAL_FIRST_SEED, TrainingSet
from ..training.feature_cache import cache_frames, cache_split, CachedSplit
from ..training.head_ablation import (evaluate_head, miou, paired_bootstrap, Row,
                                      train_head)

log = logging.getLogger('depthgate_ros.head_ablation')
ROW_DEFAULTS = {'recurrent': False, 'loops': 0}      # a row names what it adds


@dataclass
class Frames:
    """The cached frames, and what training on and scoring them needs."""

    train: CachedSplit
    val: CachedSplit
    class_names: tuple[str, ...]           # the held-out frames' classes, scored in
    cover: torch.Tensor | None = None      # training targets -> model classes (mixed datasets)
    to_dataset: np.ndarray | None = None   # model class -> held-out class

    @property
    def has_depth(self) -> bool:
        """Tell whether the held-out frames have true depth to split by (real frames do not)."""
        return bool(np.isfinite(np.asarray(self.val.depth[:, ::8, ::8], np.float32)).any())


def cache_frames_of(cfg: HeadAblationConfig, model, info, cache: Path) -> Frames:
    """Cache the training and held-out frames (once; resumable) and load them."""
    sensor = sensor_from_config(cfg.sensor)
    if not cfg.data:
        for name, frames, first in (('train', cfg.train_frames, 0),
                                    ('val', cfg.eval_frames, SYNTHETIC_VAL_FIRST_SEED)):
            cache_split(model, info, cache / name, frames=frames, first_seed=first,
                        size=tuple(cfg.size), sensor=sensor, log=log.info)
        return Frames(CachedSplit.load(cache / 'train'), CachedSplit.load(cache / 'val'),
                      tuple(info.class_names))
    data = cfg.data
    train = TrainingSet(data, tuple(info.class_names))
    held = build_dataset(data, data.val_split)
    sources = [[data.dataset, str(data.root), data.train_split]] + [
        [a['dataset'], str(a['root']), a.get('train_split', 'train')] for a in data.also]
    for name, frames, split_sources in (
            ('train', train, sources),
            ('val', held, [[data.dataset, str(data.root), data.val_split]])):
        cache_frames(model, info, cache / name, frames, {'sources': split_sources},
                     sensor=sensor, label_scale=cfg.label_scale, log=log.info)
    covers = getattr(held, 'covers', None)
    return Frames(CachedSplit.load(cache / 'train'), CachedSplit.load(cache / 'val'),
                  tuple(getattr(held, 'class_names', info.class_names)), train.cover,
                  model_to_dataset(cover_matrix(covers, tuple(info.class_names)))
                  if covers is not None else None)


def run_row(cfg: HeadAblationConfig, base, row: Row, seed: int, frames: Frames,
            out: Path) -> None:
    """Train and evaluate one (row, seed); the files appear only once both are done."""
    net, minutes = train_head(base, row, seed, frames.train,
                              iterations=row.iterations or cfg.iterations,
                              batch_size=cfg.batch_size, lr=cfg.lr, cover=frames.cover,
                              log=log.info)
    scoring = {'num_classes': len(frames.class_names), 'to_dataset': frames.to_dataset,
               'distance_edges_m': cfg.distance_edges_m}
    result = evaluate_head(net, row, frames.val, **scoring)
    arrays = {'confusion': result['confusion'], 'gate_hist': result['gate_hist']}
    if row.name in cfg.forced_branches and seed == 0:
        for b in range(net.cfg.num_bins):
            arrays[f'forced_{b}'] = evaluate_head(net, row, frames.val, forced_branch=b,
                                                  **scoring)['confusion']
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f'seed{seed}.tmp.npz'
    np.savez_compressed(tmp, minutes=minutes, **arrays)
    tmp.rename(out / f'seed{seed}.npz')
    log.info('%s seed %d: mIoU %.4f in %.1f min', row.name, seed,
             miou(result['confusion'][:, 0].sum(0)), minutes)


def _bin_range(edges, k: int) -> str:
    """Depth bin k in metres; bins run far (0) to near (K-1), as the gate's channels."""
    far_first = [math.inf, *reversed(edges), 0.0]
    hi, lo = far_first[k], far_first[k + 1]
    return f'>= {lo:.1f}' if math.isinf(hi) else f'{lo:.1f}-{hi:.1f}'


def _f(x: float) -> str:
    return f'{x:.3f}' if math.isfinite(x) else '-'     # real frames: no depth to bin by


def report(cfg: HeadAblationConfig, rows: list[Row], out: Path, frames: Frames,
           base) -> str:
    """Tabulate the finished runs: the rows, by distance, per class, the gate, forced branches."""
    runs = {r.name: [np.load(p) for p in sorted((out / r.name).glob('seed*.npz'))
                     if '.tmp' not in p.name] for r in rows}
    runs = {k: v for k, v in runs.items() if v}
    if 'baseline' not in runs:
        raise ValueError('no finished baseline run to compare with')
    conf = {k: [r['confusion'] for r in v] for k, v in runs.items()}
    # the classes the held-out frames contain (the renderer draws 11 of the 19)
    present = np.nonzero(conf['baseline'][0][:, 0].sum((0, 2)))[0].tolist()
    iterations = {r.name: r.iterations or cfg.iterations for r in rows}
    # each row against the plain head trained for as long (the row named baseline by default)
    reference = {name: next((r.name for r in rows if r.model.get('gate_source') == 'none' and
                             iterations[r.name] == iterations[name] and r.name in conf),
                            'baseline') for name in conf}
    dilations = {r.name: r.model.get('dilations', base.dilations) for r in rows}
    uniform = {r.name for r in rows if r.model.get('gate_source') == 'average'}
    table = {name: {'minutes': [float(r['minutes']) for r in rs]} for name, rs in runs.items()}
    lines = _rows_table(cfg, len(frames.val), conf, present, iterations, reference, table)
    if frames.has_depth:
        lines += _by_distance(conf, present, reference)
    lines += _per_class(conf, present, frames.class_names)
    lines += _gate_choice(runs, dilations, uniform, base.depth_edges, table)
    lines += _forced_branches(cfg.forced_branches, runs, dilations, present)
    (out / 'results.json').write_text(json.dumps(table, indent=1))
    return '\n'.join(lines) + '\n'


def _rows_table(cfg, frames: int, conf: dict, present: list, iterations: dict,
                reference: dict, table: dict) -> list[str]:
    """One line per row: mIoU over seeds, against its reference, by distance, minutes."""
    edges = cfg.distance_edges_m
    lines = [f'{frames} held-out frames, {cfg.iterations} iterations x batch '
             f'{cfg.batch_size} per run; mIoU over the {len(present)} classes present. '
             f'Distance bins: near < {edges[0]:g} m <= middle < {edges[1]:g} m <= far '
             '(sky, without depth, only in "all").', '',
             '| row | iterations | seeds | mIoU (mean ± sample std) | vs baseline (paired, 95% CI '
             'over frames) | ± over seeds | near | middle | far | min/run |',
             '|---|---|---|---|---|---|---|---|---|---|']
    scores = {name: [miou(c[:, 0].sum(0), present) for c in confs]
              for name, confs in conf.items()}
    for name, confs in conf.items():
        dist = [np.mean([miou(c[:, b + 1].sum(0), present) for c in confs]) for b in range(3)]
        ref = reference[name]
        diff = '-'
        if name != ref:
            d = paired_bootstrap([c[:, 0] for c in confs],
                                 [c[:, 0] for c in conf[ref]], classes=present)
            diff = f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" + (
                '' if ref == 'baseline' else f' vs {ref}')
            table[name]['bootstrap'] = d
        # the seeds' share: standard error of the difference of the two means
        mine, other = scores[name], scores[ref]
        seeds_se = '-' if name == ref or min(len(mine), len(other)) < 2 else _f(math.sqrt(
            np.var(mine, ddof=1) / len(mine) + np.var(other, ddof=1) / len(other)))
        table[name].update({'miou': mine, 'distance_miou': dist})
        spread = np.std(mine, ddof=1) if len(mine) > 1 else 0.0
        lines.append(f'| {name} | {iterations[name]} | {len(confs)} | {_f(np.mean(mine))} ± '
                     f'{_f(spread)} | {diff} | {seeds_se} | ' + ' | '.join(map(_f, dist)) +
                     f" | {np.mean(table[name]['minutes']):.1f} |")
    return lines


def _by_distance(conf: dict, present: list, reference: dict) -> list[str]:
    lines = ['', '### Difference to the baseline by distance (paired bootstrap, 95% CI)', '',
             '| row | near | middle | far |', '|---|---|---|---|']
    for name, confs in conf.items():
        ref = reference[name]
        if name == ref:
            continue
        cells = []
        for b in (1, 2, 3):
            d = paired_bootstrap([c[:, b] for c in confs], [c[:, b] for c in conf[ref]],
                                 classes=present, draws=300)
            cells.append(f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return lines


def _per_class(conf: dict, present: list, names) -> list[str]:
    lines = ['', '### Per-class IoU (mean over seeds)', '',
             '| row | ' + ' | '.join(names[c] for c in present) + ' |',
             '|---|' + '---|' * len(present)]
    for name, confs in conf.items():
        per = [_f(np.mean([miou(x[:, 0].sum(0), [c]) for x in confs])) for c in present]
        lines.append(f'| {name} | ' + ' | '.join(per) + ' |')
    return lines


def _gate_choice(runs: dict, dilations: dict, uniform: set, depth_edges,
                 table: dict) -> list[str]:
    """Tabulate the branch each gated row chose per true depth bin (an average gate has none)."""
    lines = []
    for name, rs in runs.items():
        hist = sum(r['gate_hist'] for r in rs)
        if not hist.sum() or name in uniform:
            continue
        if not lines:
            lines = ['', '### The gate: chosen branch (dilation) per true depth bin, % of '
                     'cells', '']
        lines += [f'{name}:', '', '| true depth (m) | ' +
                  ' | '.join(f'd={d}' for d in dilations[name]) + ' |',
                  '|---|' + '---|' * len(dilations[name])]
        for k, counts in enumerate(hist):
            share = counts / max(1, counts.sum()) * 100
            lines.append(f'| {_bin_range(depth_edges, k)} | ' +
                         ' | '.join(f'{s:.0f}' for s in share) + ' |')
        lines.append('')
        table[name]['gate_hist'] = hist.tolist()
    return lines


def _forced_branches(names, runs: dict, dilations: dict, present: list) -> list[str]:
    lines = []
    for name in names:
        rs = [r for r in runs.get(name, []) if 'forced_0' in r.files]
        if not rs:
            continue
        lines += [f'### {name}, seed 0, every pixel forced through one branch', '',
                  '| branch | all | near | middle | far |', '|---|---|---|---|---|']
        for b, d in enumerate(dilations[name]):
            c = rs[0][f'forced_{b}']
            lines.append(f'| d={d} | ' + ' | '.join(
                _f(miou(c[:, i].sum(0), present)) for i in range(4)) + ' |')
        lines.append('')
    return lines


def scale_variation(frames: Frames) -> str:
    """Per class in the frames, the spread of true depth: how much its apparent size varies."""
    lines = ['| class | pixels | depth p10 (m) | p50 | p90 | p90 / p10 |',
             '|---|---|---|---|---|---|']
    val = frames.val
    labels, depth = np.asarray(val.labels), np.asarray(val.depth, np.float32)
    for c, name in enumerate(frames.class_names):
        d = depth[(labels == c) & np.isfinite(depth)]
        if d.size == 0:
            continue
        p10, p50, p90 = np.percentile(d, [10, 50, 90])
        lines.append(f'| {name} | {d.size} | {p10:.1f} | {p50:.1f} | '
                     f'{p90:.1f} | {p90 / p10:.1f} |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-head-ablation',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('--config', required=True)
    parser.add_argument('--only', nargs='*', help='run just these rows')
    parser.add_argument('--report-only', action='store_true',
                        help='tabulate the finished runs, train nothing')
    parser.add_argument('overrides', nargs='*', help='key=value config overrides')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(name)s: %(message)s')
    try:
        cfg = load_head_ablation(args.config, args.overrides)
        model, info, _ = load_checkpoint(cfg.checkpoint)
        rows = [Row(**r) for r in cfg.rows]
    except (ConfigError, CheckpointError, OSError, TypeError) as e:
        print(f'depthgate-head-ablation: {e}', file=sys.stderr)
        return 2
    out = Path(cfg.output_dir)
    try:
        frames = cache_frames_of(cfg, model, info, Path(cfg.cache_dir))
    except (DatasetError, ValueError) as e:
        print(f'depthgate-head-ablation: {e}', file=sys.stderr)
        return 2
    base = model.cfg.replace(**{**ROW_DEFAULTS, **cfg.head})
    del model
    if not args.report_only:
        todo = [Row(**{**vars(r), 'model': {**ROW_DEFAULTS, **r.model}}) for r in rows
                if not args.only or r.name in args.only]
        # seed 0 of every row first: an interrupted study still has a whole table
        for seed in range(max((r.seeds for r in todo), default=0)):
            for row in todo:
                if seed < row.seeds and not (out / row.name / f'seed{seed}.npz').is_file():
                    run_row(cfg, base, row, seed, frames, out / row.name)
    try:
        text = report(cfg, rows, out, frames, base)
    except ValueError as e:
        print(f'depthgate-head-ablation: {e}', file=sys.stderr)
        return 2
    if frames.has_depth:
        text += '\n### Scale variation per class (held-out frames)\n\n' + scale_variation(frames)
    (out / 'results.md').write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
