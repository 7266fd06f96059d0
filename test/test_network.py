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

"""The whole network: output stride, loops, parameter sharing, gradients, gate choices."""
from conftest import small_config
from depthgate_ros.model import DepthGatedNet, ModelConfig
from depthgate_ros.model.backbone import Backbone
import pytest
import torch
import torchvision


@pytest.mark.parametrize('name,channels', [('resnet18', 512), ('resnet34', 512),
                                           ('resnet50', 2048), ('resnet101', 2048)])
def test_backbone_output_stride_is_8(name, channels):
    bb = Backbone(name).eval()
    with torch.no_grad():
        fine, low, mid, y = bb(torch.randn(1, 3, 64, 96))
    assert y.shape == (1, channels, 8, 12)
    # layer1, layer2 and (dilated) layer3: the detail paths' inputs
    assert fine.shape == (1, channels // 8, 16, 24)
    assert low.shape == (1, channels // 4, 8, 12) and mid.shape == (1, channels // 2, 8, 12)


def test_frozen_bn_is_used_and_has_no_trainable_parameters():
    bb = Backbone('resnet18', frozen_bn=True)
    norms = [m for m in bb.modules() if isinstance(m, torchvision.ops.FrozenBatchNorm2d)]
    assert len(norms) == 20
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    assert Backbone('resnet18', frozen_bn=False).layer1[0].bn1.weight.requires_grad


def test_backbone_loads_a_local_state_dict(tmp_path):
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / 'resnet18_imagenet.pth'
    torch.save(reference.state_dict(), path)
    bb = Backbone('resnet18', frozen_bn=True, weights_path=path)
    fresh = Backbone('resnet18', frozen_bn=False, weights_path=path)
    assert fresh.layer1[0].bn1.num_batches_tracked == 0
    torch.testing.assert_close(bb.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    torch.testing.assert_close(bb.stem[1].running_var, reference.bn1.running_var)
    with pytest.raises(FileNotFoundError, match='not found'):
        Backbone('resnet18', weights_path=tmp_path / 'missing.pth')
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / 'r50.pth')
    with pytest.raises(ValueError, match='does not match'):
        Backbone('resnet18', weights_path=tmp_path / 'r50.pth')


def test_backbone_weights_imagenet_reads_torchvisions_cached_file(tmp_path, monkeypatch):
    # torch.hub's cache holds the file torchvision would download: it is read, nothing fetched
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    url = torchvision.models.get_model_weights('mobilenet_v3_large').DEFAULT.url
    cache = tmp_path / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    torch.manual_seed(4)
    reference = torchvision.models.mobilenet_v3_large(weights=None)
    torch.save(reference.state_dict(), cache / url.rsplit('/', 1)[1])
    bb = Backbone('mobilenet_v3_large', frozen_bn=True, weights_path='imagenet',
                  output_stride=32)
    torch.testing.assert_close(bb.features[5].block[0][0].weight,
                               reference.features[5].block[0][0].weight)
    with pytest.raises(ValueError, match='give espnetv2 a local file'):
        Backbone('espnetv2', weights_path='imagenet', output_stride=16)


def test_outputs_per_loop_at_input_size(make_model):
    model = make_model().eval()
    x = torch.randn(2, 3, 61, 83)
    with torch.no_grad():
        outs = model(x, loops=2)
    assert len(outs) == 3
    for o in outs:
        assert o['seg'].shape == (2, 19, 61, 83)
        assert o['depth_logits'].shape == (2, 5, 61, 83)
        assert o['log_depth'].shape == (2, 1, 61, 83)
        assert o['gate'].shape == (2, 5, 8, 11)
        torch.testing.assert_close(o['gate'].sum(1), torch.ones(2, 8, 11))
    # refinement changes the prediction: loops are not copies of loop 0
    assert not torch.allclose(outs[0]['seg'], outs[2]['seg'])


def test_parameter_count_does_not_depend_on_loops(make_model):
    model = make_model().eval()
    x = torch.randn(1, 3, 32, 32)
    n_params = sum(p.numel() for p in model.parameters())
    used = []
    for loops in (0, 1, 2):
        model.zero_grad()
        out = model(x, loops=loops)
        out[-1]['seg'].sum().backward()
        used.append({n for n, p in model.named_parameters() if p.grad is not None})
    # a model configured for 0 or 5 default loops has exactly the same parameters
    for default_loops in (0, 5):
        other = make_model(loops=default_loops)
        assert sum(p.numel() for p in other.parameters()) == n_params
    # loops 1 and 2 run exactly the same weights: the recurrent module is shared.
    assert used[1] == used[2]
    assert any(n.startswith('refine.') for n in used[1])
    assert not any(n.startswith('refine.') for n in used[0])


def test_gradients_reach_depth_heads_and_backbone(make_model):
    model = make_model(frozen_bn=True).train()
    x = torch.randn(1, 3, 48, 48)
    outs = model(x, loops=1)
    loss = sum(o['seg'].mean() + o['log_depth'].mean() + o['depth_logits'].mean() for o in outs)
    loss.backward()
    for name in ('backbone.stem.0.weight', 'backbone.layer4.1.conv2.weight',
                 'head.depth.classifier.weight', 'head.depth.regressor.weight',
                 'refine.depth.classifier.weight', 'refine.gating.branches.weights.4'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_predicted_gate_is_the_depth_head_softmax(make_model):
    model = make_model().eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        o = model(x, loops=0, gate='predicted')[0]
        feat = model.stem(model.backbone(x)[-1])
        logits, _ = model.head.depth(feat)
    torch.testing.assert_close(o['gate'], logits.softmax(1))


def test_sensor_gate_with_no_valid_depth_equals_average_gate(make_model):
    model = make_model().eval()
    x = torch.randn(1, 3, 40, 56)
    nan_depth = torch.full((1, 1, 40, 56), float('nan'))
    with torch.no_grad():
        a = model(x, nan_depth, loops=2, gate='sensor')
        b = model(x, loops=2, gate='average')
    for oa, ob in zip(a, b):
        torch.testing.assert_close(oa['seg'], ob['seg'])


def test_hybrid_gate_is_exactly_sensor_with_full_depth_and_predicted_with_none(make_model):
    model = make_model().eval()
    x = torch.randn(1, 3, 40, 56)
    full = torch.rand(1, 1, 40, 56) * 60 + 1            # every pixel valid, all bins
    none = torch.full((1, 1, 40, 56), float('nan'))
    with torch.no_grad():
        hybrid_full = model(x, full, loops=2, gate='hybrid')
        sensor = model(x, full, loops=2, gate='sensor')
        hybrid_none = model(x, none, loops=2, gate='hybrid')
        predicted = model(x, loops=2, gate='predicted')
    for loop in range(3):
        assert torch.equal(hybrid_full[loop]['gate'], sensor[loop]['gate'])
        assert torch.equal(hybrid_full[loop]['seg'], sensor[loop]['seg'])
        assert torch.equal(hybrid_none[loop]['gate'], predicted[loop]['gate'])
        assert torch.equal(hybrid_none[loop]['seg'], predicted[loop]['seg'])
    # and in between it is neither: the holes take the loop's own prediction
    half = full.clone()
    half[..., :28] = float('nan')
    with torch.no_grad():
        mixed = model(x, half, loops=0, gate='hybrid')[0]['gate']
        sensor_half = model(x, half, loops=0, gate='sensor')[0]['gate']
    torch.testing.assert_close(mixed[..., 4:], sensor_half[..., 4:])    # valid cells agree
    torch.testing.assert_close(mixed[..., :3], predicted[0]['gate'][..., :3])   # holes
    with pytest.raises(ValueError, match="gate 'hybrid' needs a depth map"):
        model(x, loops=0, gate='hybrid')


def test_recurrent_input_prediction_variant(make_model):
    model = make_model(recurrent_input='prediction').eval()
    assert model.refine.block[0].in_channels == 32 + 19
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 32, 32), loops=2)
    assert len(outs) == 3


def test_baseline_attention_and_error_cases(make_model):
    baseline = make_model(gate_source='none', recurrent=False, loops=0).eval()
    assert not hasattr(baseline.head, 'gating')
    with torch.no_grad():
        o = baseline(torch.randn(1, 3, 32, 32))
    assert len(o) == 1 and o[0]['gate'] is None
    with pytest.raises(ValueError, match='needs a recurrent model'):
        baseline(torch.randn(1, 3, 32, 32), loops=1)
    with pytest.raises(ValueError, match='needs a gated model'):
        baseline(torch.randn(1, 3, 32, 32), gate='predicted')

    attention = make_model(gate_source='attention').eval()
    with torch.no_grad():
        o = attention(torch.randn(1, 3, 32, 32), loops=1)
    assert attention.head.attention is not None and o[1]['gate'].shape[1] == 5

    gated = make_model().eval()
    with pytest.raises(ValueError, match='needs a depth map'):
        gated(torch.randn(1, 3, 32, 32), gate='sensor')
    with pytest.raises(ValueError, match='not available'):
        gated(torch.randn(1, 3, 32, 32), gate='attention')


def test_config_validation_and_round_trip():
    cfg = small_config(tied=True, depth_edges=[1.5, 2.1, 3.0, 4.7])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match='K-1 = 4'):
        small_config(depth_edges=(1.0, 2.0))
    with pytest.raises(ValueError, match='ascending'):
        small_config(depth_edges=(1.0, 3.0, 2.0, 4.0))
    with pytest.raises(ValueError, match='backbone'):
        small_config(backbone='vgg16')
    with pytest.raises(ValueError, match='unknown model config keys'):
        ModelConfig.from_dict({'backbone': 'resnet18', 'gate': 'sensor'})


def test_no_weights_are_downloaded(monkeypatch):
    import torchvision
    import torchvision.models._api as tv_api
    attempts = []

    def refuse(url, *args, **kwargs):
        attempts.append(url)
        raise RuntimeError(f'attempted a download of {url}')
    # torchvision imports its own reference to the loader: patch it where it is looked up
    monkeypatch.setattr(tv_api, 'load_state_dict_from_url', refuse)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', refuse)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', refuse)
    # the trap works: asking torchvision for pretrained weights is caught
    with pytest.raises(RuntimeError, match='attempted a download'):
        torchvision.models.resnet18(weights='DEFAULT')
    assert len(attempts) == 1
    for backbone in ('resnet18', 'resnet50'):
        DepthGatedNet(small_config(backbone=backbone))
    assert len(attempts) == 1                  # our models asked for nothing
