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
depthgate-pack-model: a checkpoint made ready to ship (float16 weights, no training state).

    depthgate-pack-model runs/synthetic/model.pt depthgate_ros/weights/synthetic_resnet18.pt
    depthgate-pack-model runs/street_balanced/model.pt depthgate_ros/weights/street.pt \
        --loops 1 --calibrate camvid --calibrate-root data/CamVid --calibrate-split train

`--calibrate` fits one score offset per class on a labelled split (calibration.py) at the loops
the model ships with, and folds them into its classifiers.
"""
from __future__ import annotations

import argparse
import copy
import sys

from ..calibration import fit_offsets, sample_scores
from ..data.cityscapes import DatasetError
from ..inference import Predictor
from ..model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..model.folding import fold_batchnorm
from ..training.config import DataConfig, DATASETS
from ..training.datasets import build_dataset


_PACKING = ('packed_from', 'trained_stage', 'iteration', 'note')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-pack-model',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--note', default='', help='added to the provenance')
    parser.add_argument('--loops', type=int, default=None,
                        help='the recurrent loops the model runs when a caller does not say '
                             '(default: as trained); the node and tools take this as their '
                             'default, and any count can still be asked for')
    parser.add_argument('--calibrate', choices=DATASETS, default=None,
                        help='fit class score offsets on this labelled dataset, for the mIoU in '
                             'its classes (a split the model trained on: keep held-out ones '
                             'for choosing and reporting)')
    parser.add_argument('--calibrate-root', help='its root (not needed for synthetic)')
    parser.add_argument('--calibrate-split', default='train')
    parser.add_argument('--calibrate-pixels', type=int, default=10000,
                        help='pixels drawn per frame (default: %(default)s)')
    args = parser.parse_args(argv)
    calibration = {}
    try:
        model, info, extra = load_checkpoint(args.src)
        if args.loops is not None:
            # ModelConfig checks the count against the model (recurrent, >= 0)
            model.cfg = model.cfg.replace(loops=args.loops)
        if args.calibrate:
            calibration = _calibrate(model, info, args)
    except (CheckpointError, DatasetError, ValueError) as e:
        print(f'depthgate-pack-model: {e}', file=sys.stderr)
        return 2
    # a packed file packed again (new loops, calibration) keeps where it was trained
    earlier = {key: info.provenance.pop(key, None) for key in _PACKING}
    if earlier['packed_from'] is not None:
        info.provenance['earlier_packing'] = earlier
    info.provenance = {**info.provenance, 'packed_from': str(args.src),
                       'trained_stage': extra.get('stage'), 'iteration': extra.get('iteration'),
                       'note': args.note, **calibration}
    path = save_checkpoint(args.dst, model, info, half=True)
    print(f'{path}: {path.stat().st_size / 2**20:.1f} MiB')
    return 0


def _calibrate(model, info, args) -> dict:
    """Fit class offsets for `model` as it will run, fold them in; return the provenance."""
    if not hasattr(model, 'offset_class_scores'):
        raise ValueError(f'--calibrate needs a depth-gated model, not {model.cfg.architecture}')
    dataset = build_dataset(DataConfig(dataset=args.calibrate, root=args.calibrate_root,
                                       val_split=args.calibrate_split), args.calibrate_split)
    # the Predictor folds BatchNorm into its own copy; the packed model keeps its layers
    predictor = Predictor(fold_batchnorm(copy.deepcopy(model).eval()), info)
    scores, targets, to_dataset, names = sample_scores(predictor, dataset,
                                                       args.calibrate_pixels)
    offsets, before, after = fit_offsets(scores, targets, to_dataset, len(names))
    model.offset_class_scores(offsets)
    print(f'{args.calibrate} {args.calibrate_split}: mIoU {before:.3f} -> {after:.3f} on '
          f'{len(targets)} sampled pixels, loops {model.cfg.loops}')
    earlier = info.provenance.get('class_offsets', {})
    total = {name: round(float(v) + earlier.get(name, 0.0), 4)
             for name, v in zip(info.class_names, offsets)}
    for name, v in total.items():
        if v:
            print(f'  {name}: {v:+.2f}')
    return {'class_offsets': total,
            'calibrated_on': f'{args.calibrate} {args.calibrate_split}: {len(targets)} pixels, '
                             f'mIoU {before:.3f} -> {after:.3f}'}


if __name__ == '__main__':
    raise SystemExit(main())
