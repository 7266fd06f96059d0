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

"""The depth-aware gating module: one-hot gates select a branch, missing depth averages."""
from depthgate_ros.model.depth_bins import sensor_gate
from depthgate_ros.model.gating import average_gate, DepthGatingModule
import pytest
import torch

DILATIONS = (1, 2, 4, 8, 16)


def _module(tied=False, depthwise=False):
    torch.manual_seed(0)
    m = DepthGatingModule(8, DILATIONS, tied=tied, depthwise=depthwise).eval()
    # Non-trivial BN statistics so every branch really differs.
    for bn in m.branches.norms:
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize('sparse', [False, True])
@pytest.mark.parametrize('tied', [False, True])
@pytest.mark.parametrize('k', range(5))
def test_one_hot_gate_equals_branch(k, tied, sparse):
    m = _module(tied)
    m.sparse = sparse
    x = torch.randn(2, 8, 24, 40)
    gate = torch.zeros(2, 5, 24, 40)
    gate[:, k] = 1.0
    with torch.no_grad():
        out = m(x, gate)
        expected = m.fuse(m.branches.branch(x, k))
    # dense: the same arithmetic; sparse: a GEMM sums in another order
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 if sparse else 1e-6)


def test_branches_have_the_dilations_asked_for():
    m = _module()
    x = torch.zeros(1, 8, 40, 40)
    x[0, :, 20, 20] = 1.0  # an impulse: where a branch's response changes shows its dilation
    with torch.no_grad():
        for k, d in enumerate(DILATIONS):
            change = (m.branches.branch(x, k) - m.branches.branch(torch.zeros_like(x), k)).abs()
            rows = torch.nonzero(change[0].sum((0, 2))).flatten().tolist()
            cols = torch.nonzero(change[0].sum((0, 1))).flatten().tolist()
            assert rows == cols == [20 - d, 20, 20 + d]


def test_sensor_gate_with_invalid_depth_equals_average():
    m = _module()
    x = torch.randn(1, 8, 16, 16)
    depth = torch.full((1, 1, 16, 16), float('nan'))
    with torch.no_grad():
        gated = m(x, sensor_gate(depth, torch.tensor([5.0, 10.0, 20.0, 40.0]), (16, 16)))
        averaged = m(x, average_gate(x, 5))
        by_hand = m.fuse(sum(m.branches.branch(x, k) for k in range(5)) / 5)
    torch.testing.assert_close(gated, averaged)
    torch.testing.assert_close(gated, by_hand, rtol=1e-5, atol=1e-6)


def test_tied_branches_share_one_kernel():
    tied, untied = _module(tied=True), _module(tied=False)
    assert len(tied.branches.weights) == 1 and len(untied.branches.weights) == 5
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == 4 * 8 * 8 * 9
    # A gradient through any branch lands on the one shared kernel.
    x = torch.randn(1, 8, 12, 12)
    tied.branches.branch(x, 3).sum().backward()
    assert tied.branches.weights[0].grad.abs().sum() > 0


def test_gate_shape_is_checked():
    m = _module()
    with pytest.raises(ValueError, match='does not fit'):
        m(torch.randn(1, 8, 16, 16), torch.full((1, 4, 16, 16), 0.25))


def test_depthwise_branch_is_a_full_branch_with_a_diagonal_kernel():
    # A full 3x3 conv whose kernel is zero off the channel diagonal filters each channel alone,
    # which is what a depthwise branch claims to do: the full module, given that kernel and the
    # same norms and fuse, is the reference.
    dw = _module(depthwise=True)
    assert tuple(dw.branches.weights[0].shape) == (8, 1, 3, 3)
    full = DepthGatingModule(8, DILATIONS).eval()
    full.load_state_dict({k: v for k, v in dw.state_dict().items()
                          if not k.startswith('branches.weights.')}, strict=False)
    with torch.no_grad():
        for w_full, w_dw in zip(full.branches.weights, dw.branches.weights):
            w_full.zero_()
            w_full[torch.arange(8), torch.arange(8)] = w_dw[:, 0]
    x = torch.randn(2, 8, 20, 24)
    gate = torch.rand(2, 5, 20, 24).softmax(1)
    with torch.no_grad():
        torch.testing.assert_close(dw(x, gate), full(x, gate), rtol=1e-5, atol=1e-5)


def test_depthwise_branches_with_a_hard_gate_run_dense():
    # The sparse path gathers taps for full kernels; depthwise branches must not take it.
    m = _module(depthwise=True)
    x = torch.randn(1, 8, 16, 16)
    gate = torch.zeros(1, 5, 16, 16)
    gate[:, 2] = 1.0
    with torch.inference_mode():
        assert not m._use_sparse(gate)
        out = m(x, gate)
        expected = m.fuse(m.branches.branch(x, 2))
    torch.testing.assert_close(out, expected)
