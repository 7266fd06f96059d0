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
depthgate-train: the paper's stage-wise training (section 5) from one YAML config.

depthgate-train --config config/train_synthetic.yaml [key=value ...]
depthgate-train --config ... --resume                 # continue an interrupted run
torchrun --nproc_per_node 2 -m depthgate_ros.cli.train --config ...   # DDP, one GPU each
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from ..data.cityscapes import DatasetError
from ..training.config import ConfigError, load_config
from ..training.distributed import cleanup, init_distributed
from ..training.engine import run_training, TrainingError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='depthgate-train',
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument('--config', required=True, help='training YAML (see config/)')
    parser.add_argument('--resume', action='store_true',
                        help="continue from the run's last checkpoint")
    parser.add_argument('--max-steps', type=int, default=None,
                        help='stop (with a checkpoint) after this many steps in this call')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('overrides', nargs='*', help='config overrides, e.g. optim.lr=0.01 '
                        'stages.baseline.iterations=200')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] %(name)s: %(message)s')
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f'depthgate-train: {e}', file=sys.stderr)
        return 2
    ctx = init_distributed(cfg.device)
    try:
        path = run_training(cfg, ctx, resume=args.resume, max_steps=args.max_steps)
    except (ConfigError, DatasetError, TrainingError, ValueError) as e:
        print(f'depthgate-train: {e}', file=sys.stderr)
        return 2
    finally:
        cleanup(ctx)
    if ctx.is_main:
        print(f'final model: {path}' if path else 'paused; run again with --resume')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
