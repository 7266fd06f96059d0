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

"""Sparse hard gating gives the dense module's output, and is used only where it applies."""
from depthgate_ros.data.synthetic import Camera, render_frame
from depthgate_ros.model import DepthGatedNet, ModelConfig, sparse_gating
from depthgate_ros.model.depth_bins import quantile_edges, sensor_gate
from depthgate_ros.model.gating import DepthGatingModule
import pytest
import torch
import torch.nn.functional as F

DILATIONS = (1, 2, 4, 8, 16)


def _module(channels=16, tied=False):
    torch.manual_seed(0)
    m = DepthGatingModule(channels, DILATIONS, tied=tied).eval()
    for bn in m.branches.norms:           # non-trivial statistics: folding must be right
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return m


def _dense_and_sparse(m, x, gate):
    with torch.no_grad():
        m.sparse = False
        dense = m(x, gate)
        m.sparse = True
        sparse = m(x, gate)
    return dense, sparse


def _real_gate(size):
    """Build a sensor gate from a street frame: one-hot where depth is valid, uniform in sky."""
    frame = render_frame(5, Camera(width=128, height=64, fx=90.0, fy=90.0))
    depth = torch.from_numpy(frame.depth)[None, None]
    edges = torch.tensor(quantile_edges(frame.depth[torch.isfinite(depth[0, 0]).numpy()]))
    return sensor_gate(depth, edges, size)


@pytest.mark.parametrize('tied', [False, True])
def test_sparse_equals_dense_on_a_real_gate_map(tied):
    m = _module(tied=tied)
    gate = _real_gate((16, 32))
    assert ((gate > 0) & (gate < 1)).any()          # sky: the uniform 1/K pixels
    x = torch.randn(1, 16, 16, 32)
    dense, sparse = _dense_and_sparse(m, x, gate)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def test_sparse_equals_dense_for_random_one_hot_batches_and_small_maps():
    m = _module()
    # batch of 2, and a map smaller than the largest dilation (taps fall in the padding)
    for shape in ((2, 16, 20, 36), (1, 16, 6, 9)):
        n, _, h, w = shape
        x = torch.randn(shape)
        gate = F.one_hot(torch.randint(0, 5, (n, h, w)), 5).permute(0, 3, 1, 2).float()
        gate[:, :, :, 0] = 0.2                       # one soft column
        dense, sparse = _dense_and_sparse(m, x, gate)
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def test_sparse_is_used_for_hard_gates_only(monkeypatch):
    m = _module()
    calls = []
    real = sparse_gating.sparse_branch_sum
    monkeypatch.setattr('depthgate_ros.model.gating.sparse_branch_sum',
                        lambda *a: calls.append(1) or real(*a))
    x = torch.randn(1, 16, 8, 8)
    one_hot = F.one_hot(torch.randint(0, 5, (1, 8, 8)), 5).permute(0, 3, 1, 2).float()
    soft = torch.rand(1, 5, 8, 8).softmax(1)
    with torch.no_grad():
        m(x, one_hot)
        assert len(calls) == 1
        m(x, soft)                                   # every branch everywhere: dense
        assert len(calls) == 1
    m(x, one_hot)                                    # autograd on: dense
    m.train()
    with torch.no_grad():
        m(x, one_hot)                                # training statistics: dense
    assert len(calls) == 1
    with pytest.raises(RuntimeError, match='eval mode'):
        real(m.branches, x, one_hot)


def test_folded_weights_follow_a_weight_change():
    m = _module()
    x = torch.randn(1, 16, 8, 8)
    gate = F.one_hot(torch.randint(0, 5, (1, 8, 8)), 5).permute(0, 3, 1, 2).float()
    _dense_and_sparse(m, x, gate)                    # fills the cache
    with torch.no_grad():
        for w in m.branches.weights:
            w.mul_(2.0)
    dense, sparse = _dense_and_sparse(m, x, gate)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def test_hard_predicted_gate_is_one_hot_and_runs_sparse_to_the_same_result():
    torch.manual_seed(1)
    model = DepthGatedNet(ModelConfig(backbone='resnet18', channels=16, depth_channels=(8, 8),
                                      recurrent=True, loops=2,
                                      depth_edges=(5.0, 10.0, 20.0, 40.0))).eval()
    image = torch.randn(1, 3, 64, 96)
    model.hard_gate = True
    with torch.no_grad():
        sparse = model(image, loops=2)
        for mod in model.modules():
            if isinstance(mod, DepthGatingModule):
                mod.sparse = False
        dense = model(image, loops=2)
    for s, d in zip(sparse, dense):
        assert set(s['gate'].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(s['gate'].sum(1), torch.ones_like(s['gate'][:, 0]))
        torch.testing.assert_close(s['seg'], d['seg'], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(s['log_depth'], d['log_depth'], rtol=1e-4, atol=1e-4)
    model.train()                                    # training keeps the soft gate
    assert model(image, loops=0)[0]['gate'].unique().numel() > 2


def test_hard_sensor_gate_keeps_missing_depth_uniform():
    from depthgate_ros.model.depth_bins import harden_gate
    gate = _real_gate((16, 32))
    hard = harden_gate(gate)
    uniform = torch.isclose(gate, torch.tensor(0.2)).all(1)   # no valid depth in the cell
    assert uniform.any() and (~uniform).any()
    assert torch.equal(hard.permute(0, 2, 3, 1)[uniform], gate.permute(0, 2, 3, 1)[uniform])
    picked = hard.permute(0, 2, 3, 1)[~uniform]
    assert set(picked.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(picked.argmax(-1), gate.permute(0, 2, 3, 1)[~uniform].argmax(-1))
    torch.testing.assert_close(hard.sum(1), torch.ones_like(hard[:, 0]))
