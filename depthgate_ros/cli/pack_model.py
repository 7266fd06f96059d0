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
"""
from __future__ import annotations

import argparse
import sys

from ..model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


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
    args = parser.parse_args(argv)
    try:
        model, info, extra = load_checkpoint(args.src)
        if args.loops is not None:
            # ModelConfig checks the count against the model (recurrent, >= 0)
            model.cfg = model.cfg.replace(loops=args.loops)
    except (CheckpointError, ValueError) as e:
        print(f'depthgate-pack-model: {e}', file=sys.stderr)
        return 2
    info.provenance = {**info.provenance, 'packed_from': str(args.src),
                       'trained_stage': extra.get('stage'), 'iteration': extra.get('iteration'),
                       'note': args.note}
    path = save_checkpoint(args.dst, model, info, half=True)
    print(f'{path}: {path.stat().st_size / 2**20:.1f} MiB')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
