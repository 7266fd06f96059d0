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
The stage-wise training procedure of paper section 5.

Stages run in order (e.g. baseline -> depth branch -> gating -> loop1 -> loop2 -> end-to-end
with segmentation loss only); each starts from the previous stage's final weights, loading
every tensor whose name and shape still fit (new modules, such as the gating branches when
they replace the baseline's second conv, start from their initialisation).

Within a stage: SGD with momentum, the poly schedule, frozen backbone BN, autocast on CUDA,
checkpoints every N iterations (atomic; `resume` continues with model, optimizer, iteration
and RNG state), periodic validation with a best-checkpoint copy, a CSV log, TensorBoard when
installed, and a stop with a clear message after too many consecutive non-finite losses.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
import shutil
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .config import StageConfig, TrainConfig
from .datasets import (AugmentedDataset, build_dataset, class_table, IterationSampler,
                       TrainingSet)
from .distributed import DistContext
from .teacher import SoftTargets, Teacher, TeacherError
from ..data.labels import CITYSCAPES_NAMES
from ..data.sensors import sample_focal
from ..evaluation import evaluate_dataset
from ..inference import normalize_image, Predictor
from ..model import build_model, DepthGatedNet, ModelConfig, quantile_edges
from ..model.checkpoint import load_checkpoint, ModelInfo, read_checkpoint, save_checkpoint
from ..model.config import DEPTH_GATES
from ..model.losses import LossWeights, multitask_loss, TERMS
from ..options import PredictorOptions
from ..weights import resolve_model

log = logging.getLogger('depthgate_ros.train')


class TrainingError(RuntimeError):
    pass


def depth_edges_for(cfg: TrainConfig, raw_train, num_bins: int, max_samples: int = 64):
    """
    Equal-count bin edges from the training set's valid depths (as the authors chose theirs).

    Unless the config gives them.
    """
    if cfg.model.get('depth_edges'):
        return tuple(cfg.model['depth_edges'])
    step = max(1, len(raw_train) // max_samples)
    depths = [raw_train[i]['depth'] for i in range(0, len(raw_train), step)[:max_samples]
              if raw_train[i].get('depth') is not None]
    if not depths:
        raise TrainingError('no depth in the training set to compute depth bins from; '
                            'set model.depth_edges in the config')
    return quantile_edges(np.concatenate([d.ravel() for d in depths]), num_bins)


def run_training(cfg: TrainConfig, ctx: DistContext, resume: bool = False,
                 max_steps: int | None = None) -> Path | None:
    """
    Run every stage not finished yet.

    `max_steps` stops (with a checkpoint) after that many optimizer steps in this call, so a long
    run can be split across sessions with `resume`. Returns the final model path once all stages
    are done, else None.
    """
    out = Path(cfg.output_dir)
    if ctx.is_main:
        existing = list(out.glob('*/last.pt')) + list(out.glob('*/final.pt'))
        if existing and not resume:
            raise TrainingError(f'{out} already holds checkpoints ({existing[0]}); pass '
                                '--resume to continue, or choose another output_dir')
        out.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    torch.manual_seed(cfg.seed)
    names, colors = class_table(cfg.data.dataset)
    raw_train = TrainingSet(cfg.data, names)
    if cfg.distill.teacher:
        raw_train.teach(soft_targets(cfg, raw_train, names, ctx))
    raw_val = build_dataset(cfg.data, cfg.data.val_split)
    # a bundled model's name (street, ...) is a checkpoint too: fine-tuning starts from it
    previous: Path | None = resolve_model(cfg.init_from) if cfg.init_from else None
    if previous is not None and not previous.is_file():
        raise TrainingError(f'init_from checkpoint not found: {previous}')
    # Fine-tuning keeps what the depth branch learnt in: its bins and its camera's focal
    # length, unless the config or the new frames say otherwise.
    start = read_checkpoint(previous) if previous is not None else None
    base = ModelConfig.from_dict({**{k: v for k, v in cfg.model.items() if k != 'depth_edges'},
                                  'num_classes': len(names)})
    edges = tuple(start['config']['depth_edges']) if start and not cfg.model.get(
        'depth_edges') else depth_edges_for(cfg, raw_train, base.num_bins)
    base = base.replace(depth_edges=edges)
    focal = training_focal(raw_train)
    if focal is None and start is not None:
        focal = start['info'].get('focal_px')
    info = ModelInfo(names, colors, provenance={'dataset': cfg.data.dataset,
                                                'config': cfg.to_dict()},
                     focal_px=focal)
    steps_left = max_steps
    for index, stage in enumerate(cfg.stages):
        final = out / stage.name / 'final.pt'
        if final.is_file():
            previous = final
            continue
        runner = StageRunner(cfg, stage, index, base.replace(**stage.model), info, ctx,
                             raw_train, raw_val)
        done, used = runner.run(previous, resume, steps_left)
        if not done:
            return None
        previous = final
        if steps_left is not None:
            steps_left -= used
            if steps_left <= 0 and index + 1 < len(cfg.stages):
                return None
    model_path = out / 'model.pt'
    if ctx.is_main and previous is not None:
        shutil.copyfile(previous, model_path)
        log.info('all stages done: %s', model_path)
    ctx.barrier()
    return model_path


def soft_targets(cfg: TrainConfig, raw_train: TrainingSet, names, ctx: DistContext):
    """Return the teacher's targets for data.dataset's training frames, run where not cached."""
    if tuple(names) != CITYSCAPES_NAMES:
        raise TrainingError('distill: the published teachers label the 19 Cityscapes classes; '
                            f'a {cfg.data.dataset} model has other classes')
    targets = SoftTargets(cfg.distill.cache_dir or Path(cfg.output_dir) / 'teacher')
    if ctx.is_main:
        try:
            teacher = Teacher(cfg.distill.teacher, cfg.distill.input_size, cfg.distill.flip,
                              ctx.device)
        except TeacherError as e:
            raise TrainingError(f'distill.teacher: {e}') from e
        targets.build(raw_train.parts[0], teacher)
        del teacher
    ctx.barrier()
    return targets


def gating_from_context(state: dict, own: dict) -> dict:
    """
    Initialise gating-module tensors from a plain head's context conv (conv, BN).

    Each branch gets the conv kernel and the BN, the 1x1 fuse is the identity with a neutral BN.
    With dilation 1 and any gate that sums to 1 this reproduces the plain head (up to the fuse BN's
    batch statistics in training).
    """
    out = {}
    for head in ('head', 'refine'):
        src, dst = f'{head}.context', f'{head}.gating'
        if f'{src}.0.weight' not in state or f'{dst}.fuse.0.weight' not in own:
            continue
        kernel = state[f'{src}.0.weight']
        for key in own:
            if key.startswith(f'{dst}.branches.weights.'):
                if own[key].shape != kernel.shape:
                    raise ValueError(f'{key} {tuple(own[key].shape)} cannot start from the plain '
                                     f'context conv {tuple(kernel.shape)} (depthwise '
                                     'branches): train the gating module from the start')
                out[key] = kernel.clone()
            elif key.startswith(f'{dst}.branches.norms.'):
                out[key] = state[f"{src}.1.{key.rsplit('.', 1)[1]}"].clone()
        c = kernel.shape[0]
        out[f'{dst}.fuse.0.weight'] = torch.eye(c, dtype=kernel.dtype).view(c, c, 1, 1)
        bn = f'{dst}.fuse.1'
        out.update({f'{bn}.weight': torch.ones(c), f'{bn}.bias': torch.zeros(c),
                    f'{bn}.running_mean': torch.zeros(c), f'{bn}.running_var': torch.ones(c),
                    f'{bn}.num_batches_tracked': torch.tensor(0)})
    return out


def training_focal(raw_train) -> float | None:
    """
    Return the training images' focal length in pixels, if they say.

    The median of a few of those that do: in a mixed set, real frames without intrinsics train
    no depth, so the depth scale is that of the frames that have both.
    """
    camera = getattr(raw_train, 'camera', None)          # rendered: one camera for all
    if camera is not None:
        return float(camera.fx)
    step = max(1, len(raw_train) // 64)
    focals = []
    for i in range(0, len(raw_train), step)[:64]:
        try:
            focals.append(sample_focal(raw_train[i]))
        except ValueError:
            continue
    return float(np.median(focals)) if focals else None


def set_train_mode(model: DepthGatedNet, freeze_bn: str) -> None:
    """Train mode, with the BatchNorm layers `freeze_bn` names (backbone | all | none) in eval."""
    model.train()
    frozen = model.modules() if freeze_bn == 'all' else (
        model.backbone.modules() if freeze_bn == 'backbone' else ())
    for m in frozen:
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def sync_batchnorm(model: DepthGatedNet, device: torch.device) -> DepthGatedNet:
    """
    Share BatchNorm statistics across DDP ranks (SyncBatchNorm), on CUDA.

    SyncBatchNorm has no CPU implementation, so CPU ranks keep per-rank statistics. The
    conversion replaces the layers inside `model` itself (its root is no BatchNorm), so
    freezing, saving and validating `model` afterwards see the synchronised layers.
    """
    if device.type != 'cuda':
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


class StageRunner:
    def __init__(self, cfg: TrainConfig, stage: StageConfig, index: int,
                 model_cfg: ModelConfig, info: ModelInfo, ctx: DistContext, raw_train,
                 raw_val):
        self.cfg, self.stage, self.ctx = cfg, stage, ctx
        self.model_cfg, self.info = model_cfg, info
        self._mean = torch.tensor(info.mean, device=ctx.device)
        self._std = torch.tensor(info.std, device=ctx.device)
        self.dir = Path(cfg.output_dir) / stage.name
        self.seed = cfg.seed * 1000 + index
        # the first stage builds its backbone from backbone_weights, also under init_from
        self.backbone_weights = cfg.backbone_weights if index == 0 else None
        self.raw_train, self.raw_val = raw_train, raw_val
        cover = getattr(raw_train, 'cover', None)
        self.cover = cover.to(ctx.device) if cover is not None else None
        weights = getattr(raw_train, 'class_weights', None)
        self.class_weights = weights.to(ctx.device) if weights is not None else None
        self.weights = LossWeights(**stage.loss)
        mix = stage.gate_mix or {model_cfg.gate_source: 1.0}
        self.gates = sorted(g for g, p in mix.items() if p > 0)
        self.gate_p = np.array([mix[g] for g in self.gates], np.float64)
        self.gate_p /= self.gate_p.sum()
        self.needs_sensor = any(g in DEPTH_GATES for g in self.gates)
        self.needs_depth = self.weights.uses('depth_reg') or self.weights.uses('depth_cls')
        self.needs_teacher = self.weights.uses('distill')
        self.base_lr = stage.lr if stage.lr is not None else cfg.optim.lr

    # -- set-up -------------------------------------------------------------------------

    def _build(self, previous: Path | None, resume: bool):
        torch.manual_seed(self.seed)
        model = build_model(self.model_cfg, self.backbone_weights).to(self.ctx.device)
        opt = torch.optim.SGD(model.parameters(), lr=self.base_lr,
                              momentum=self.cfg.optim.momentum,
                              weight_decay=self.cfg.optim.weight_decay)
        start, best = 0, -math.inf
        last = self.dir / 'last.pt'
        if resume and last.is_file():
            loaded, _, extra = load_checkpoint(last, map_location=self.ctx.device)
            model.load_state_dict(loaded.state_dict())
            opt.load_state_dict(extra['optimizer'])
            start, best = int(extra['iteration']), float(extra.get('best_miou', -math.inf))
            torch.set_rng_state(extra['rng']['torch'].cpu())
            if torch.cuda.is_available() and extra['rng'].get('cuda') is not None:
                torch.cuda.set_rng_state_all([s.cpu() for s in extra['rng']['cuda']])
            if self.ctx.is_main:
                log.info('stage %s: resumed at iteration %d from %s', self.stage.name, start,
                         last)
        elif previous is not None:
            self._init_from(model, previous)
        return model, opt, start, best

    def _init_from(self, model: DepthGatedNet, previous: Path) -> None:
        state = read_checkpoint(previous, map_location=self.ctx.device)['state_dict']
        own = model.state_dict()
        # backbone_weights has just loaded the backbone: a tensor of another encoder whose
        # shape happens to fit (ESPNetv2s of other widths share their first conv's) must not
        # overwrite it
        kept = {k for k in own if self.backbone_weights and k.startswith('backbone.')}
        fits = {k: v for k, v in state.items()
                if k in own and k not in kept and own[k].shape == v.shape}
        # a backbone that does not fit would start from random weights under a trained head:
        # a model config that differs from the checkpoint's (another backbone_width), not
        # a fine-tuning anyone wants
        misfit = [k for k in own if k.startswith('backbone.') and k not in kept and k in state
                  and state[k].shape != own[k].shape]
        if misfit:
            raise TrainingError(
                f'init_from {previous}: its backbone does not fit the configured model '
                f'({len(misfit)} tensors differ in shape, e.g. {misfit[0]}); give the model '
                f'keys the checkpoint was trained with (e.g. model.backbone_width), or '
                f'backbone_weights for a new backbone')
        if self.cfg.gating_init == 'context':
            fits.update(gating_from_context(state, own))
        model.load_state_dict(fits, strict=False)
        fresh = sorted({k.rsplit('.', 2)[0] for k in own if k not in fits and k not in kept})
        if self.ctx.is_main:
            log.info('stage %s: %d tensors from %s%s; newly initialised: %s', self.stage.name,
                     len(fits), previous,
                     f', the backbone from {self.backbone_weights}' if kept else '',
                     ', '.join(fresh) or 'none')

    # -- the loop -----------------------------------------------------------------------

    def run(self, previous: Path | None, resume: bool, max_steps: int | None):
        cfg, ctx, stage = self.cfg, self.ctx, self.stage
        model, opt, start, best = self._build(previous, resume)
        if ctx.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
        total = stage.iterations
        stop = total if max_steps is None else min(total, start + max_steps)
        loader = self._loader(start, stop)
        net = model
        if ctx.distributed:
            net = sync_batchnorm(model, ctx.device)
            # Stages train only part of the heads (e.g. depth losses off): unused is normal.
            net = DistributedDataParallel(net, find_unused_parameters=True)
        use_amp = ctx.device.type == 'cuda' and cfg.optim.amp != 'none'
        scaler = torch.amp.GradScaler('cuda', enabled=use_amp and cfg.optim.amp == 'fp16')
        logger = _Logger(self.dir, ctx.is_main, resume and start > 0)
        bar = _progress_bar(ctx.is_main, total, start, stage.name)
        nonfinite_run, t_last = 0, time.perf_counter()
        set_train_mode(model, cfg.optim.freeze_bn)
        it = start
        for it, batch in zip(range(start, stop), loader):
            lr = self.base_lr * (1 - it / total) ** cfg.optim.poly_power
            for group in opt.param_groups:
                group['lr'] = lr
            loss, parts = self._loss(net, model, batch, self._gate(it), use_amp)
            opt.zero_grad(set_to_none=True)
            if not ctx.all_true(bool(torch.isfinite(loss))):
                nonfinite_run += 1
                logger.nonfinite += 1
                if nonfinite_run > cfg.optim.max_nonfinite:
                    raise TrainingError(
                        f'stage {stage.name}: {nonfinite_run} consecutive non-finite losses '
                        f'at iteration {it} (lr {lr:.2e}); lower optim.lr or check the data')
                continue
            nonfinite_run = 0
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_value = ctx.mean(float(loss.detach()))   # the global batch's loss
            step = it + 1
            if ctx.is_main and (step % cfg.log_every == 0 or step == stop):
                now = time.perf_counter()
                logger.row(step, loss_value, parts, lr, now - t_last)
                t_last = now
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{loss_value:.3f}', lr=f'{lr:.1e}', refresh=False)
            if cfg.val_every and step % cfg.val_every == 0 and step < total:
                best = self._validate(model, step, best, logger)
                set_train_mode(model, cfg.optim.freeze_bn)
            if step % cfg.checkpoint_every == 0 and step < total:
                self._save(model, opt, step, best, 'last.pt')
        if bar is not None:
            bar.close()
        steps_done = (it + 1 - start) if stop > start else 0
        if stop < total:
            logger.close()
            self._save(model, opt, stop, best, 'last.pt')
            if ctx.is_main:
                log.info('stage %s: paused at iteration %d of %d (resume to continue)',
                         stage.name, stop, total)
            return False, steps_done
        best = self._validate(model, total, best, logger)
        logger.close()
        self._save(model, None, total, best, 'final.pt')
        if ctx.is_main:
            (self.dir / 'last.pt').unlink(missing_ok=True)
        return True, steps_done

    def _loader(self, start: int, stop: int) -> DataLoader:
        """Batches for iterations start..stop-1, the same whether resumed or not."""
        cfg, ctx = self.cfg, self.ctx
        train_set = AugmentedDataset(self.raw_train, cfg.data, self.seed,
                                     sensor_depth=self.needs_sensor,
                                     teacher=self.needs_teacher)
        sampler = IterationSampler(len(train_set), cfg.optim.batch_size, self.seed, start,
                                   stop - start, ctx.rank, ctx.world_size)
        # An explicit generator keeps the loader from drawing its worker seed from the global
        # RNG, which a resumed run restores: the dropout stream must continue unshifted.
        return DataLoader(train_set, batch_size=cfg.optim.batch_size, sampler=sampler,
                          num_workers=cfg.data.num_workers, pin_memory=ctx.device.type == 'cuda',
                          generator=torch.Generator().manual_seed(self.seed))

    def _loss(self, net, model, batch: dict, gate: str, use_amp: bool):
        """Run one batch with its gate; return the multi-task loss and its parts."""
        device = self.ctx.device
        image = normalize_image(batch['rgb'].to(device, non_blocking=True), self._mean,
                                self._std)
        labels = batch['labels'].to(device, non_blocking=True)
        depth = batch['depth'].to(device, non_blocking=True) if self.needs_depth else None
        sensor = batch['sensor_depth'].to(device, non_blocking=True).unsqueeze(1) \
            if gate in DEPTH_GATES else None
        teacher = batch['teacher'].to(device, non_blocking=True) if self.needs_teacher else None
        amp_dtype = torch.float16 if self.cfg.optim.amp == 'fp16' else torch.bfloat16
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            outs = net(image, sensor, loops=self.model_cfg.loops, gate=gate)
        outs = [{k: v.float() if v is not None else None for k, v in o.items()} for o in outs]
        return multitask_loss(outs, labels, depth, model.depth_edges, self.weights, self.cover,
                              teacher, self.class_weights)

    def _gate(self, iteration: int) -> str:
        """Draw the batch's gate source from (seed, iteration): all ranks and resumes agree."""
        if len(self.gates) == 1:
            return self.gates[0]
        rng = np.random.default_rng((self.seed, iteration, 3))
        return self.gates[int(rng.choice(len(self.gates), p=self.gate_p))]

    def _save(self, model, opt, iteration: int, best: float, name: str) -> None:
        if not self.ctx.is_main:
            return
        extra = {'stage': self.stage.name, 'iteration': iteration, 'best_miou': best}
        if opt is not None:
            extra['optimizer'] = opt.state_dict()
            extra['rng'] = {'torch': torch.get_rng_state(),
                            'cuda': torch.cuda.get_rng_state_all()
                            if torch.cuda.is_available() else None}
        save_checkpoint(self.dir / name, model, self.info, extra=extra)

    def _validate(self, model, step: int, best: float, logger) -> float:
        """
        Validate on rank 0 (the others wait).

        Copies the checkpoint to best.pt when mIoU improves.
        """
        if self.ctx.is_main:
            # the tools' options (options.py), at the stage's own gate and loops
            options = PredictorOptions(device=str(self.ctx.device), loops=self.model_cfg.loops)
            # contiguous and eager: the Predictor converts (and compiles) the model in place,
            # and this one trains on
            predictor = Predictor(model, self.info, **{**options.predictor_kwargs(),
                                                       'gate': self.model_cfg.gate_source,
                                                       'channels_last': False,
                                                       'compile': False})
            # a sensor-gated stage validates on what its first configured sensor measures
            sensor = None
            if self.model_cfg.gate_source in DEPTH_GATES:
                sensor = self.cfg.data.sensors[0] if self.cfg.data.sensors else 'exact'
            r = evaluate_dataset(predictor, self.raw_val, sensor_depth=sensor,
                                 max_frames=self.cfg.data.val_frames)['final']
            logger.validation(step, r['miou'], r['depth']['delta1'])
            log.info('stage %s, iteration %d: val mIoU %.4f, depth delta1 %.4f',
                     self.stage.name, step, r['miou'], r['depth']['delta1'])
            if r['miou'] > best:
                best = r['miou']
                save_checkpoint(self.dir / 'best.pt', model, self.info,
                                extra={'stage': self.stage.name, 'iteration': step,
                                       'best_miou': best})
        self.ctx.barrier()
        return best


class _Logger:
    """CSV always; TensorBoard event files when tensorboard is installed."""

    FIELDS = ['iteration', 'loss', *TERMS, 'lr', 'seconds', 'nonfinite_skipped', 'val_miou',
              'val_delta1']

    def __init__(self, directory: Path, active: bool, append: bool):
        self.active, self.nonfinite, self.tb = active, 0, None
        if not active:
            return
        path = directory / 'log.csv'
        new = not (append and path.is_file())
        self.file = open(path, 'w' if new else 'a', newline='')
        self.csv = csv.DictWriter(self.file, self.FIELDS)
        if new:
            self.csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(directory / 'tensorboard'))
        except ImportError:
            pass

    def row(self, step, loss, parts, lr, seconds) -> None:
        sums = {k: sum(v for name, v in parts.items() if name.startswith(k + '/'))
                for k in TERMS}
        self.csv.writerow({'iteration': step, 'loss': f'{loss:.5f}', 'lr': f'{lr:.3e}',
                           'seconds': f'{seconds:.2f}', 'nonfinite_skipped': self.nonfinite,
                           **{k: f'{v:.5f}' for k, v in sums.items()}})
        self.file.flush()
        if self.tb:
            self.tb.add_scalar('train/loss', loss, step)
            self.tb.add_scalar('train/lr', lr, step)

    def validation(self, step, miou, delta1) -> None:
        self.csv.writerow({'iteration': step, 'val_miou': f'{miou:.5f}',
                           'val_delta1': f'{delta1:.5f}'})
        self.file.flush()
        if self.tb:
            self.tb.add_scalar('val/miou', miou, step)

    def close(self) -> None:
        if self.active:
            self.file.close()
            if self.tb:
                self.tb.close()


def _progress_bar(active: bool, total: int, start: int, name: str):
    """Show a tqdm bar with loss, lr and ETA, on rank 0 only."""
    if not active:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, desc=name, dynamic_ncols=True, mininterval=5.0)
