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

"""Depth quantisation, sensor gates, quantile edges, disparity -> depth."""
import math

from depthgate_ros.model.depth_bins import (disparity_to_depth, hybrid_gate, quantile_edges,
                                            quantize_depth, sensor_evidence, sensor_gate,
                                            soft_bins)
import numpy as np
import pytest
import torch

EDGES = torch.tensor([5.0, 10.0, 20.0, 40.0])


def test_near_depth_selects_large_dilation_bin():
    depth = torch.tensor([1.0, 5.0, 7.0, 15.0, 30.0, 80.0])
    # bin index == branch index; branches ascend in dilation (1, 2, 4, 8, 16)
    assert quantize_depth(depth, EDGES).tolist() == [4, 3, 3, 2, 1, 0]


def test_invalid_depth_is_bin_minus_one():
    depth = torch.tensor([float('nan'), 0.0, -3.0, float('inf'), 12.0])
    assert quantize_depth(depth, EDGES).tolist() == [-1, -1, -1, -1, 2]


def test_sensor_gate_one_hot_uniform_and_normalised():
    depth = torch.full((1, 16, 16), 30.0)      # bin 1 everywhere
    depth[0, :8, :] = float('nan')             # top half missing
    gate = sensor_gate(depth, EDGES, (16, 16))
    assert gate.shape == (1, 5, 16, 16)
    assert torch.allclose(gate[0, :, 12, 3], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(gate[0, :, 2, 3], torch.full((5,), 0.2))
    assert torch.allclose(gate.sum(1), torch.ones(1, 16, 16))


def test_sensor_gate_downsampled_is_soft_at_boundaries_and_sums_to_one():
    depth = torch.full((1, 1, 64, 64), 3.0)     # near: bin 4
    depth[..., 32:] = 100.0                     # far: bin 0
    depth[..., 28:36] = torch.linspace(3.0, 100.0, 8)
    gate = sensor_gate(depth, EDGES, (8, 8))
    assert torch.allclose(gate.sum(1), torch.ones(1, 8, 8), atol=1e-6)
    assert gate[0, 4, 0, 0] == 1.0 and gate[0, 0, 0, 7] == 1.0
    boundary = gate[0, :, 0, 3]                 # the 8-pixel cell holding the ramp
    assert (boundary > 0).sum() >= 2


def test_quantile_edges_hold_equal_counts():
    rng = np.random.default_rng(0)
    d = rng.lognormal(2.5, 0.8, size=50_000).astype(np.float32)
    d[:1000] = np.nan
    edges = quantile_edges(d, 5)
    assert len(edges) == 4 and all(a < b for a, b in zip(edges, edges[1:]))
    bins = quantize_depth(torch.from_numpy(d), torch.tensor(edges))
    counts = np.bincount(bins[bins >= 0].numpy(), minlength=5)
    assert counts.sum() == 49_000
    assert np.all(np.abs(counts - 9800) <= 2)


def test_quantile_edges_reject_degenerate_input():
    with pytest.raises(ValueError, match='valid depths'):
        quantile_edges([np.nan, 1.0], 5)
    with pytest.raises(ValueError, match='concentrated'):
        quantile_edges(np.full(100, 3.0), 5)


def test_disparity_to_depth_numpy_and_torch():
    disp = np.array([[10.0, 0.0, -1.0, np.nan, 2.5]], dtype=np.float32)
    expected = [720 * 0.5 / 10, np.nan, np.nan, np.nan, 720 * 0.5 / 2.5]
    np.testing.assert_allclose(disparity_to_depth(disp, 720.0, 0.5), [expected], rtol=1e-6)
    t = disparity_to_depth(torch.from_numpy(disp), 720.0, 0.5)
    np.testing.assert_allclose(t.numpy(), [expected], rtol=1e-6)
    with pytest.raises(ValueError, match='positive'):
        disparity_to_depth(disp, 0.0, 0.5)


def test_hybrid_gate_blends_by_the_valid_fraction_of_each_cell():
    # 4x4 pixels -> 2x2 cells: left cells fully valid (bin 4 top, bin 0 bottom), top-right
    # cell 1 of 4 pixels valid (bin 2), bottom-right cell without depth
    depth = torch.full((1, 4, 4), float('nan'))
    depth[0, :2, :2] = 2.0
    depth[0, 2:, :2] = 90.0
    depth[0, 0, 2] = 15.0
    predicted = torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2]).view(1, 5, 1, 1).expand(1, 5, 2, 2)
    votes, hole = sensor_evidence(depth, EDGES, (2, 2))
    gate = hybrid_gate(votes, hole, predicted)
    assert hole[0, 0].tolist() == [[0.0, 0.75], [0.0, 1.0]]
    assert gate[0, :, 0, 0].tolist() == [0, 0, 0, 0, 1]
    assert gate[0, :, 1, 0].tolist() == [1, 0, 0, 0, 0]
    # a quarter from the sensor's bin 2, three quarters from the prediction
    expected = 0.75 * torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2]) + 0.25 * torch.eye(5)[2]
    torch.testing.assert_close(gate[0, :, 0, 1], expected)
    assert gate[0, :, 1, 1].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.2, 0.2])
    torch.testing.assert_close(gate.sum(1), torch.ones(1, 2, 2))
    # the sensor gate fills the same holes with 1/K instead
    torch.testing.assert_close(sensor_gate(depth, EDGES, (2, 2))[0, :, 0, 1],
                               0.75 * torch.full((5,), 0.2) + 0.25 * torch.eye(5)[2])


def test_soft_sensor_bins_are_the_measurement_probabilities():
    def phi(x):
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))
    depth = torch.tensor([[[15.0, 4.0, float('nan')]]])
    p = soft_bins(depth, EDGES, 0.2)[0, :, 0]
    # 15 m measured with 0.2 log-std: bin 2 (10-20 m) holds P(10 <= d < 20)
    z = [(math.log(e) - math.log(15.0)) / 0.2 for e in (5.0, 10.0, 20.0, 40.0)]
    expected = [1 - phi(z[3]), phi(z[3]) - phi(z[2]), phi(z[2]) - phi(z[1]),
                phi(z[1]) - phi(z[0]), phi(z[0])]          # far (bin 0) ... near (bin 4)
    assert p[:, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert p[:, 1].argmax() == 4 and p[:, 1].sum() == pytest.approx(1.0)
    assert p[:, 2].tolist() == [0.0] * 5                    # invalid: no vote at all
    # a tiny sigma is the one-hot of quantize_depth; the gate still sums to 1 with holes
    sharp = soft_bins(depth, EDGES, 1e-6)[0, :, 0, :2]
    assert sharp.argmax(0).tolist() == quantize_depth(depth, EDGES)[0, 0, :2].tolist()
    gate = sensor_gate(depth, EDGES, (1, 3), sigma=0.3)
    torch.testing.assert_close(gate.sum(1), torch.ones(1, 1, 3))
    torch.testing.assert_close(gate[0, :, 0, 2], torch.full((5,), 0.2))
