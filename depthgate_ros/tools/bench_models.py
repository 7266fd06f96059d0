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
Trained models side by side at a camera's size: speed and accuracy from one run.

    depthgate-bench --only models --compare lraspp=runs/lraspp/model.pt \
        deeplabv3=runs/deeplabv3/model.pt --out bench/

Rows: the bundled `default` and `fast` models and every --compare checkpoint, at each size,
each loaded as the node loads it (BatchNorm folded, channels last) and run eager and as the
node runs it (`torch.compile`: its parts compiled, the option `compile`); `fast` also eager
without channels last and through ONNX Runtime in fp32 and int8. Per
row: the forward pass (median, p95), its GFLOP and fraction of the machine's peak, the whole
`Predictor.predict`, what predict adds to the network (pre/post: predict around a model that
replays its outputs) and its share of predict, and mIoU and depth delta1
on held-out synthetic frames rendered once at that size (depth capped at 80 m), and every other
row's mIoU minus the eager fast model's with a 95% interval from resampling the frames (paired:
both rows on the same resampled frames), and its forward time over the fast model's (the median
of the two rows' per-round ratios, with a 95% interval from resampling the rounds).

All rows at a size are timed in turns (one call of each, round after round, in a new order
each round), so a change in the machine's speed during the run falls on every model alike: a
shared machine drifts by tens of percent over minutes, more than the differences being
measured.
"""
from __future__ import annotations

import copy
from pathlib import Path
import tempfile
import time

import numpy as np
import torch

from ..evaluation import evaluate_dataset
from ..inference import Predictor
from ..metrics import SegmentationMetric
from ..options import PredictorOptions
from ..training.datasets import SYNTHETIC_VAL_FIRST_SEED, SyntheticStreetDataset
from ..training.head_ablation import paired_bootstrap


# the node's defaults (options.py) on the CPU, and the same run eager
NODE_OPTIONS = PredictorOptions(device='cpu')
EAGER_OPTIONS = PredictorOptions(device='cpu', compile=False)


class _Candidate:
    """One row to time: its forward pass, its Predictor and what the table says about it."""

    def __init__(self, name, backend, forward, predictor, flops=None, extra=None):
        self.name, self.backend, self.forward, self.predictor = name, backend, forward, predictor
        self.flops, self.extra = flops, extra or {}


def _eager(name, model, predictor, x, loops, count_flops, backend='eager') -> _Candidate:
    def forward():
        with torch.inference_mode():
            model(x, loops=loops, full_size=False)
    with torch.inference_mode():
        flops = count_flops(forward)
    return _Candidate(name, backend, forward, predictor, flops, {'loops': loops})


def _compiled(name, path, x, loops, flops) -> _Candidate:
    """Time the model as the node runs it: its parts compiled (the option `compile`)."""
    predictor = Predictor.from_checkpoint(path, **NODE_OPTIONS.predictor_kwargs())
    t0 = time.perf_counter()
    # the first frame compiles (untimed by the rounds; reported as compile_s)
    predictor.predict(np.zeros((*x.shape[-2:], 3), np.uint8), outputs=())
    first_s = time.perf_counter() - t0
    model = predictor.model

    def forward():
        with torch.inference_mode():
            model(x, loops=loops, full_size=False)
    return _Candidate(name, 'torch.compile', forward, predictor, flops,
                      {'loops': loops, 'compile_s': first_s})


def _onnx(name, model, info, x, loops, size, tmp) -> list[_Candidate]:
    from ..export import export_onnx, quantize_int8
    # torch.export cannot keep the batch dimension dynamic across channels-last strides
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    fp32 = export_onnx(model, info, Path(tmp) / f'{name}.onnx', gate=model.cfg.gate_source,
                       loops=loops, size=size)
    t0 = time.perf_counter()
    q = quantize_int8(fp32, Path(tmp) / f'{name}.int8.onnx', info, size=size)
    quantize_s = time.perf_counter() - t0
    out = []
    for backend, file in (('onnxruntime fp32', fp32), ('onnxruntime int8', q)):
        graph = Predictor.from_checkpoint(file, **NODE_OPTIONS.predictor_kwargs())
        out.append(_Candidate(name, backend, lambda g=graph.model: g.run_flat(x), graph, None, {
            'loops': loops, 'file_mib': file.stat().st_size / 2**20,
            **({'quantize_s': quantize_s} if 'int8' in backend else {})}))
    return out


class _Replayed:
    """
    A model that runs once and then replays its outputs.

    A Predictor around it costs only what `Predictor.predict` adds to the network
    (normalisation, labels and depth at the image's size), timed in the same rounds as
    everything else rather than as a difference of two medians, each of which moves by more
    than that between runs.
    """

    def __init__(self, model):
        self._model, self._outs = model, None

    def __getattr__(self, name):
        return getattr(self._model, name)

    def iter_loops(self, *args, **kwargs):
        if self._outs is None:
            self._outs = list(self._model.iter_loops(*args, **kwargs))
        yield from self._outs


def _pre_post(predictor: Predictor) -> Predictor:
    """Return `predictor` with its model replayed (_Replayed), sharing everything else."""
    replayed = copy.copy(predictor)
    replayed.model = _Replayed(predictor.model)
    return replayed


def bench_models(entries: list[tuple[str, str]], sizes, n_frames: int, peak: float,
                 timed_together, count_flops, rounds: int, warmup: int, int8: bool = True,
                 compile_: bool = True, log=print) -> list[dict]:
    """`entries`: (name, checkpoint path or bundled name). Returns one dict per row."""
    rows = []
    for size in sizes:
        log(f'models at {size[0]}x{size[1]}: rendering {n_frames} held-out frames ...')
        # rendered once and kept, so every row scores the same pixels
        data = SyntheticStreetDataset(n_frames, SYNTHETIC_VAL_FIRST_SEED, size)
        frames = [data[i] for i in range(n_frames)]
        x = torch.randn(1, 3, *size)
        rgb = frames[0]['rgb']
        with tempfile.TemporaryDirectory() as tmp:
            candidates = []
            for name, path in entries:
                # as the node loads it (BatchNorm folded, channels last), peers alike, but eager
                predictor = Predictor.from_checkpoint(path, **EAGER_OPTIONS.predictor_kwargs())
                model, info, loops = predictor.model, predictor.info, predictor.loops
                x = x.contiguous(memory_format=predictor.memory_format)
                eager = _eager(name, model, predictor, x, loops, count_flops)
                candidates.append(eager)
                if compile_:
                    # as the node runs it
                    log(f'  {name}: torch.compile ...')
                    candidates.append(_compiled(name, path, x, loops, eager.flops))
                if name == 'fast':
                    # what the memory format is worth (channels_last was off before the fast model)
                    plain = Predictor.from_checkpoint(
                        path, **{**EAGER_OPTIONS.predictor_kwargs(), 'channels_last': False})
                    candidates.append(_eager(name, plain.model, plain, x.contiguous(), loops,
                                             count_flops, 'eager contiguous'))
                if name == 'fast' and int8:
                    log(f'  {name}: ONNX export and int8 quantisation ...')
                    candidates += _onnx(name, model, info, x, loops, size, tmp)
            log(f'  timing {len(candidates)} rows in turns, {rounds} rounds ...')
            fns = {}
            for i, c in enumerate(candidates):
                fns[i, 'forward'] = c.forward
                fns[i, 'predict'] = lambda p=c.predictor: p.predict(rgb, outputs=())
                fns[i, 'pre_post'] = lambda p=_pre_post(c.predictor): p.predict(rgb, outputs=())
            times = timed_together(fns, rounds, warmup, samples=True)
            confusions, at_size = [], []
            for i, c in enumerate(candidates):
                log(f'  {c.name} ({c.backend}): held-out frames ...')
                at_size.append(_row(c, size, times[i, 'forward'], times[i, 'predict'],
                                    times[i, 'pre_post'], frames, peak, confusions))
            _versus_fast(at_size, confusions)
            rows += at_size
    return rows


def _versus_fast(rows: list[dict], confusions: list[np.ndarray]) -> None:
    """
    Add each row's mIoU minus the eager fast model's and its forward time over the fast's.

    Both paired, with bootstrap intervals: the mIoU on the same resampled frames, the time as
    the median over rounds of the two rows' ratio within a round, so the machine's drift,
    which moves whole rounds, cancels.
    """
    base = next((i for i, r in enumerate(rows)
                 if (r['model'], r['backend']) == ('fast', 'eager')), None)
    if base is None:
        return
    for i, r in enumerate(rows):
        if i != base:
            b = paired_bootstrap([confusions[i]], [confusions[base]])
            r['miou_vs_fast'], r['miou_vs_fast_ci95'] = b['difference'], b['ci95']
            r['time_vs_fast'], r['time_vs_fast_ci95'] = paired_time_ratio(
                r['samples_ms'], rows[base]['samples_ms'])


def paired_time_ratio(row_ms, base_ms, draws: int = 1000, seed: int = 0):
    """Return the median of per-round ratios row / base, and its 95% interval over rounds."""
    ratio = np.asarray(row_ms, dtype=float) / np.asarray(base_ms, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(ratio[rng.integers(0, len(ratio), (draws, len(ratio)))], axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(np.median(ratio)), [float(lo), float(hi)]


def _row(c: _Candidate, size, t: dict, p: dict, pre_post: dict, frames, peak,
         confusions: list) -> dict:
    per_frame = []

    def confusion(i, sample, preds):
        m = SegmentationMetric(len(c.predictor.info.class_names))
        m.update(preds[-1].labels, sample['labels'])
        per_frame.append(m.confusion)
    r = evaluate_dataset(c.predictor, frames, max_depth=80.0,          # as docs/results.md
                         on_frame=confusion)['final']
    confusions.append(np.stack(per_frame))
    row = {'model': c.name, 'backend': c.backend, 'size': list(size), **t,
           'predict_median_ms': p['median_ms'], 'pre_post_median_ms': pre_post['median_ms'],
           'postprocess_fraction': pre_post['median_ms'] / p['median_ms'],
           'miou': r['miou'], 'delta1': r['depth']['delta1'], 'frames': len(frames),
           **c.extra}
    if c.flops is not None:
        row['gflop'] = c.flops / 1e9
        row['fraction_of_peak'] = c.flops / (t['median_ms'] / 1e3) / 1e9 / peak
    return row


COLUMNS = [('model', 'model'), ('backend', 'backend'), ('size', 'input'), ('loops', 'loops'),
           ('median_ms', 'forward median ms'), ('p95_ms', 'p95 ms'), ('gflop', 'GFLOP'),
           ('fraction_of_peak', 'of peak'), ('predict_median_ms', 'predict ms'),
           ('pre_post_median_ms', 'pre/post ms'), ('postprocess_fraction', 'pre/post share'),
           ('miou', 'mIoU'),
           ('delta1', 'depth delta1'), ('miou_vs_fast', 'mIoU - fast'),
           ('time_vs_fast', 'forward / fast')]


def summary(rows: list[dict]) -> list[str]:
    """Sentences for what a table cannot say: compile and quantisation costs."""
    out = []
    for r in rows:
        if 'compile_s' in r:
            out.append(f"torch.compile at {r['size'][0]}x{r['size'][1]}: first call "
                       f"{r['compile_s']:.0f} s (compilation), then {r['median_ms']:.1f} ms.")
        if 'miou_vs_fast_ci95' in r:
            lo, hi = r['miou_vs_fast_ci95']
            out.append(f"{r['model']} ({r['backend']}) at {r['size'][0]}x{r['size'][1]}: mIoU "
                       f"{r['miou_vs_fast']:+.3f} against the fast model's, 95% interval "
                       f'[{lo:+.3f}, {hi:+.3f}] over resampled frames.')
        if 'time_vs_fast_ci95' in r:
            lo, hi = r['time_vs_fast_ci95']
            out.append(f"{r['model']} ({r['backend']}) at {r['size'][0]}x{r['size'][1]}: forward "
                       f"{r['time_vs_fast']:.2f}x the fast model's (median of the per-round "
                       f'ratios), 95% interval [{lo:.2f}, {hi:.2f}] over resampled rounds.')
        if 'quantize_s' in r:
            out.append(f"int8 at {r['size'][0]}x{r['size'][1]}: quantised in "
                       f"{r['quantize_s']:.0f} s, {r['file_mib']:.1f} MiB.")
    return out
