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

"""BatchNorm folded into convolutions for inference: the same outputs, fewer layers."""
import copy

from depthgate_ros.model import build_model, ModelConfig
from depthgate_ros.model.folding import fold_batchnorm
import pytest
import torch
from torch import nn


def _with_statistics(model):
    """Give every BatchNorm running statistics and affine terms far from the identity."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize('cfg, resnet', [
    (ModelConfig.preset('fast', depth_edges=[4.0, 8.0, 16.0, 32.0]), False),
    (ModelConfig(channels=32, depth_channels=[16, 8], frozen_bn=False), True),
    (ModelConfig(architecture='lraspp_mobilenet_v3_large', gate_source='none', recurrent=False,
                 loops=0), False),
], ids=['fast', 'default-layout', 'lraspp'])
def test_folded_model_predicts_the_same(cfg, resnet):
    """
    Input tried: one 96 x 128 image through all loops; scores and depth within 1e-4.

    What stays unfolded: the gating branches' norms (a functional conv, not a Sequential) and a
    torchvision ResNet block's bn1/bn2 (attributes, not a Sequential).
    """
    model = _with_statistics(build_model(cfg))
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fold_batchnorm(copy.deepcopy(model))
    after = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    branch_norms = sum(len(m.norms) for m in folded.modules() if hasattr(m, 'norms'))
    block_norms = sum(2 for m in folded.modules() if type(m).__name__ == 'BasicBlock')
    assert after == branch_norms + block_norms and (resnet or before > 2 * after)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(model(x, full_size=False), folded(x, full_size=False)):
            for key in ('seg', 'log_depth'):
                if a[key] is not None:
                    torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-4)


def test_training_models_are_not_folded():
    """Input tried: a model left in training mode; refused, nothing changed."""
    model = build_model(ModelConfig(channels=16, depth_channels=[8, 8]))
    n = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with pytest.raises(ValueError, match='model.eval'):
        fold_batchnorm(model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == n


def test_predictor_from_checkpoint_folds(tmp_path):
    """The node's loader folds; labels and depth match the unfolded model's (a 64 x 96 frame)."""
    import numpy as np
    from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
    from depthgate_ros.inference import Predictor
    from depthgate_ros.model.checkpoint import ModelInfo, save_checkpoint
    model = _with_statistics(build_model(ModelConfig.preset('fast')))
    info = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)
    path = save_checkpoint(tmp_path / 'fast.pt', model, info)
    loaded = Predictor.from_checkpoint(path, device='cpu')
    plain = Predictor(copy.deepcopy(model), info, device='cpu')
    assert sum(isinstance(m, nn.BatchNorm2d) for m in loaded.model.modules()) == \
        sum(len(m.norms) for m in loaded.model.modules() if hasattr(m, 'norms'))
    rgb = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    a, b = plain.predict(rgb), loaded.predict(rgb)
    assert (a.labels == b.labels).mean() > 0.999
    np.testing.assert_allclose(b.depth, a.depth, rtol=1e-4)
