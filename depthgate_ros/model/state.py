"""Comparing a state dict with a module before loading it, so a mismatch is reported as one
readable sentence instead of torch's wall of size-mismatch lines."""
from __future__ import annotations

import torch


def state_mismatch(module: torch.nn.Module, state: dict) -> str | None:
    """None when `state` loads into `module` strictly; otherwise what is wrong."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        return f"missing {missing[:4]}, unexpected {unexpected[:4]}"
    for k, v in state.items():
        if own[k].shape != v.shape:
            return f"weight {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
    return None
