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

"""Process-group set-up for `torchrun` (DDP); a plain single process when not launched by it."""
from __future__ import annotations

from dataclasses import dataclass
import os

import torch
import torch.distributed as dist

from ..inference import resolve_device


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device('cpu')

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """Average of `value` over the ranks."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def all_true(self, flag: bool) -> bool:
        """Tell whether `flag` holds on every rank (so all ranks take the same branch)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())


def init_distributed(device: str = 'auto') -> DistContext:
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank, local = int(os.environ['RANK']), int(os.environ.get('LOCAL_RANK', '0'))
    use_cuda = device != 'cpu' and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group('nccl' if use_cuda else 'gloo')
    return DistContext(rank, world, torch.device('cuda', local) if use_cuda else
                       torch.device('cpu'))


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
