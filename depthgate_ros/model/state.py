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
Compare a state dict with a module before loading it.

Then a mismatch is reported as one readable sentence instead of torch's wall of
size-mismatch lines.
"""
from __future__ import annotations

import torch


def state_mismatch(module: torch.nn.Module, state: dict) -> str | None:
    """None when `state` loads into `module` strictly; otherwise what is wrong."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        return f'missing {missing[:4]}, unexpected {unexpected[:4]}'
    for k, v in state.items():
        if own[k].shape != v.shape:
            return f'weight {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}'
    return None
