import os

import pytest
import torch

from depthgate_ros.model import DepthGatedNet, ModelConfig

# Two cores: keep torch from oversubscribing when pytest-xdist or BLAS threads pile up.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def small_config(**changes) -> ModelConfig:
    """A narrow network with the paper's structure (all branches, heads, loops) that runs in
    milliseconds on a CPU."""
    base = dict(backbone="resnet18", channels=32, depth_channels=(16, 8), num_classes=19)
    base.update(changes)
    return ModelConfig(**base)


@pytest.fixture
def make_model():
    def make(seed: int = 0, **changes) -> DepthGatedNet:
        torch.manual_seed(seed)
        return DepthGatedNet(small_config(**changes))
    return make
