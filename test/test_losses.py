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

"""Paper Eq. 1: values, masking of invalid depth and ignored labels, per-loop weights."""
import math

from depthgate_ros.model.losses import (depth_cls_loss, depth_reg_loss, LossWeights,
                                        multitask_loss, seg_cls_loss)
import numpy as np
import pytest
import torch
import torch.nn.functional as F

EDGES = torch.tensor([5.0, 10.0, 20.0, 40.0])


def _outputs(n_loops=2, seed=0, h=12, w=16):
    g = torch.Generator().manual_seed(seed)
    return [{'seg': torch.randn(2, 19, h, w, generator=g, requires_grad=True),
             'log_depth': torch.randn(2, 1, h, w, generator=g, requires_grad=True),
             'depth_logits': torch.randn(2, 5, h, w, generator=g, requires_grad=True)}
            for _ in range(n_loops + 1)]


def _gt(seed=1, h=12, w=16):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 19, (2, h, w), generator=g)
    labels[:, :3] = 255
    depth = torch.rand(2, h, w, generator=g) * 60 + 0.5
    depth[:, :, :4] = float('nan')
    depth[:, -2:, :] = 0.0
    return labels, depth


def test_depth_reg_is_half_mean_squared_log_error_over_valid_pixels():
    log_pred = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    depth = torch.tensor([[[1.0, float('nan')], [math.e, 0.0]]])
    # valid pixels: (0,0): (0 - 0)^2, (1,0): (2 - 1)^2
    assert depth_reg_loss(log_pred, depth).item() == pytest.approx(0.5 * (0 + 1) / 2)


def test_depth_cls_targets_are_bins_of_valid_pixels():
    depth = torch.tensor([[[3.0, 100.0, float('nan')]]])
    logits = torch.zeros(1, 5, 1, 3)
    logits[0, 4, 0, 0] = 2.0   # near pixel -> bin 4
    logits[0, 0, 0, 1] = 2.0   # far pixel -> bin 0
    expected = -F.log_softmax(torch.tensor([2.0, 0, 0, 0, 0]), 0)[0].item()
    assert depth_cls_loss(logits, depth, EDGES).item() == pytest.approx(expected, rel=1e-5)


def test_invalid_ground_truth_changes_neither_loss_nor_gradient():
    labels, depth = _gt()
    w = LossWeights(seg=1.0, depth_reg=0.3, depth_cls=0.2)
    results = []
    for fill in (float('nan'), 0.0, -7.0, float('inf')):
        outs = _outputs()
        d = depth.clone()
        invalid = ~(torch.isfinite(depth) & (depth > 0))
        d[invalid] = fill
        total, _ = multitask_loss(outs, labels, d, EDGES, w)
        total.backward()
        results.append((total.detach(), [o['log_depth'].grad.clone() for o in outs],
                        [o['depth_logits'].grad.clone() for o in outs]))
    for total, g_reg, g_cls in results[1:]:
        assert torch.equal(total, results[0][0])
        assert all(torch.equal(a, b) for a, b in zip(g_reg, results[0][1]))
        assert all(torch.equal(a, b) for a, b in zip(g_cls, results[0][2]))
    assert torch.isfinite(results[0][0])
    # and no gradient at all flows to invalid pixels
    invalid = ~(torch.isfinite(depth) & (depth > 0))
    assert results[0][1][0][:, 0][invalid].abs().max() == 0


def test_ignored_labels_do_not_contribute():
    labels, _ = _gt()
    logits = torch.randn(2, 19, 12, 16, requires_grad=True)
    seg_cls_loss(logits, labels).backward()
    assert logits.grad.permute(0, 2, 3, 1)[labels == 255].abs().max() == 0
    all_ignored = torch.full_like(labels, 255)
    assert seg_cls_loss(logits, all_ignored).item() == 0.0


def test_eq1_sums_weighted_terms_over_loops():
    labels, depth = _gt()
    outs = _outputs(n_loops=2)
    # authors' Cityscapes seg weights: 1 last loop, 0.5 previous, 0.1 earlier
    w = LossWeights(seg=(1.0, 0.5, 0.1), depth_reg=0.0, depth_cls=0.01)
    total, parts = multitask_loss(outs, labels, depth, EDGES, w)
    expected = sum(sw * seg_cls_loss(o['seg'], labels) + 0.01 * depth_cls_loss(
        o['depth_logits'], depth, EDGES) for sw, o in zip((0.1, 0.5, 1.0), outs))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {f'{n}/loop{loop}' for n in ('seg_cls', 'depth_cls')
                          for loop in range(3)}


def test_depth_weights_without_depth_are_an_error():
    labels, _ = _gt()
    with pytest.raises(ValueError, match='no ground-truth depth'):
        multitask_loss(_outputs(), labels, None, EDGES, LossWeights(depth_cls=0.01))
    total, parts = multitask_loss(_outputs(), labels, None, EDGES, LossWeights())
    assert set(parts) == {'seg_cls/loop0', 'seg_cls/loop1', 'seg_cls/loop2'}


def test_covered_set_loss_is_minus_log_of_the_summed_probability():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 3, 5, dtype=torch.float64) * 3
    # targets 0-3: one model class each; target 4 covers classes 1 and 3; 255 ignored
    cover = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                          [0, 1, 0, 1]], dtype=torch.float32)
    labels = torch.randint(0, 5, (2, 3, 5))
    labels[0, 0, :2] = 255
    p = logits.softmax(1).numpy()
    lab = labels.numpy()
    terms = []
    for n in range(2):
        for y in range(3):
            for x in range(5):
                t = lab[n, y, x]
                if t == 255:
                    continue
                terms.append(-math.log(p[n, 1, y, x] + p[n, 3, y, x] if t == 4 else
                                       p[n, t, y, x]))
    got = seg_cls_loss(logits, labels, cover)
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-6)
    # one-class targets only: exactly the plain cross-entropy
    plain = labels.clamp(max=3).where(labels != 255, 255)
    assert float(seg_cls_loss(logits, plain, cover)) == pytest.approx(
        float(seg_cls_loss(logits, plain)), rel=1e-6)


def test_covered_set_loss_is_finite_where_every_covered_class_is_far_off():
    # probabilities of 1e-40 underflow float32: a log of their sum would be -inf
    logits = torch.tensor([[0.0, -95.0, -96.0]]).view(1, 3, 1, 1).requires_grad_()
    cover = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    loss = seg_cls_loss(logits, torch.tensor([[[1]]]), cover)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(95.0 - math.log1p(
        math.exp(-1.0)), rel=1e-5)
    assert torch.isfinite(logits.grad).all()


def test_class_weights_weigh_each_target_as_torch_weighs_cross_entropy():
    # tried: covered-set targets with a weight each, against a weighted mean by hand; and
    # one-class targets against torch's weighted cross-entropy
    torch.manual_seed(4)
    logits = torch.randn(2, 4, 3, 5, dtype=torch.float64) * 3
    cover = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                          [0, 1, 0, 1]], dtype=torch.float32)
    weight = torch.tensor([1.0, 2.0, 0.5, 4.0, 3.0], dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 3, 5))
    labels[1, 2, 1:] = 255
    p, lab = logits.softmax(1).numpy(), labels.numpy()
    num = den = 0.0
    for n, y, x in ((n, y, x) for n in range(2) for y in range(3) for x in range(5)):
        t = lab[n, y, x]
        if t == 255:
            continue
        prob = p[n, 1, y, x] + p[n, 3, y, x] if t == 4 else p[n, t, y, x]
        num += -float(weight[t]) * math.log(prob)
        den += float(weight[t])
    assert float(seg_cls_loss(logits, labels, cover, weight)) == pytest.approx(num / den,
                                                                               rel=1e-6)
    plain = labels.clamp(max=3).where(labels != 255, 255)
    assert float(seg_cls_loss(logits, plain, cover, weight)) == pytest.approx(float(
        F.cross_entropy(logits, plain, weight=weight[:4], ignore_index=255)), rel=1e-6)


def test_enet_class_weights():
    # ENet (Paszke et al. 2016): w = 1 / ln(1.02 + p); a class never seen gets the largest
    from depthgate_ros.training.datasets import enet_weights
    w = enet_weights(np.array([600, 300, 100, 0]))
    expected = [1 / math.log(1.02 + s) for s in (0.6, 0.3, 0.1, 0.0)]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert w[0] < w[1] < w[2] < w[3]
