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

"""The fast preset, the torchvision peers and bundled models chosen by name."""
from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.model import build_model, DepthGatedNet, ModelConfig
from depthgate_ros.model.backbone import Backbone
from depthgate_ros.model.checkpoint import (CheckpointNotFoundError, load_checkpoint, ModelInfo,
                                            save_checkpoint)
from depthgate_ros.model.peers import PeerNet
from depthgate_ros.training.config import ConfigError, from_dict
from depthgate_ros.weights import bundled_checkpoint, resolve_model
import pytest
import torch
import torchvision
from torchvision.models import segmentation

INFO = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS)


@pytest.mark.parametrize('stride,width,tail', [(16, 1.0, False), (32, 1.0, False),
                                               (32, 0.75, True)])
def test_mobilenet_backbone_is_torchvisions_trunk(stride, width, tail):
    """Same weights, same input: our stride-8 split and last map equal torchvision's features."""
    torch.manual_seed(0)
    ref = torchvision.models.mobilenet_v3_large(weights=None, dilated=stride == 16,
                                                width_mult=width, reduced_tail=tail).eval()
    bb = Backbone('mobilenet_v3_large', frozen_bn=False, output_stride=stride,
                  width_mult=width, reduced_tail=tail).eval()
    bb.features.load_state_dict(ref.features.state_dict())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        fine, low, mid, high = bb(x)
        want_fine = ref.features[:4](x)
        want_low = ref.features[:7](x)
        want_mid = ref.features[:13](x)
        want = ref.features(x)
    # torchvision's widths: 24, 40, 112, 960 at 1.0; at 0.75 rounded to multiples of 8, the
    # reduced tail halving the last stage (960 / 2 * 0.75 = 360, rounded up to 384)
    channels = (24, 40, 112, 960) if width == 1.0 else (24, 32, 88, 384)
    assert (bb.fine_channels, bb.low_channels, bb.mid_channels, bb.out_channels) == channels
    assert fine.shape == (1, channels[0], 24, 32)
    assert low.shape == (1, channels[1], 12, 16)
    assert mid.shape == (1, channels[2], 6, 8)
    assert high.shape == (1, channels[3], 96 // stride, 128 // stride)
    torch.testing.assert_close(fine, want_fine)
    torch.testing.assert_close(low, want_low)
    torch.testing.assert_close(mid, want_mid)
    torch.testing.assert_close(high, want)


@pytest.mark.parametrize('stride,size', [(8, (12, 16)), (16, (6, 8)), (32, (3, 4))])
def test_resnet_backbone_strides(stride, size):
    fine, low, mid, high = Backbone('resnet18', output_stride=stride).eval()(
        torch.randn(1, 3, 96, 128))
    assert fine.shape == (1, 64, 24, 32)
    assert low.shape == (1, 128, 12, 16)
    assert mid.shape == (1, 256, *((12, 16) if stride == 8 else (6, 8)))
    assert high.shape == (1, 512, *size)


def test_bad_strides_are_refused():
    with pytest.raises(ValueError, match='output_stride 8 is not one of'):
        ModelConfig(backbone='mobilenet_v3_large', output_stride=8)
    with pytest.raises(ValueError, match='output stride 16 or 32, not 8'):
        Backbone('mobilenet_v3_large', output_stride=8)
    with pytest.raises(ValueError, match='unknown model preset'):
        ModelConfig.preset('fastest')


def test_width_and_tail_are_mobilenet_options():
    """A ResNet asked for a width multiplier or reduced tail is refused, not silently full."""
    with pytest.raises(ValueError, match='MobileNetV3 options; resnet18 has neither'):
        ModelConfig(backbone='resnet18', backbone_width=0.5)
    with pytest.raises(ValueError, match='MobileNetV3 options'):
        ModelConfig(backbone='resnet18', backbone_reduced_tail=True)
    with pytest.raises(ValueError, match='no width multiplier or reduced tail'):
        Backbone('resnet18', width_mult=0.75)
    with pytest.raises(ValueError, match='backbone_width must be > 0'):
        ModelConfig(backbone='mobilenet_v3_large', output_stride=32, backbone_width=0.0)


def test_imagenet_weights_of_another_width_are_refused(tmp_path):
    """The full-width ImageNet layout of torchvision does not load into a narrower trunk."""
    path = tmp_path / 'mobilenet_v3_large.pth'
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), path)
    Backbone('mobilenet_v3_large', output_stride=32, weights_path=path)     # its own width
    with pytest.raises(ValueError, match='does not match the MobileNetV3 backbone'):
        Backbone('mobilenet_v3_large', output_stride=32, weights_path=path, width_mult=0.75,
                 reduced_tail=True)


def test_fast_preset_shapes_and_size():
    """Gating and loops at 1/32, classes at 1/4 (detail paths), upsampled only when asked."""
    cfg = ModelConfig.preset('fast')
    assert (cfg.backbone, cfg.output_stride, cfg.detail_channels, cfg.fine_channels) == (
        'mobilenet_v3_large', 32, 64, 8)
    assert cfg.dilations == (1, 1, 1, 2, 3)
    torch.manual_seed(0)
    net = DepthGatedNet(cfg).eval()
    # the reduced tail: the last stage at half width, 480 channels into the stem
    assert cfg.backbone_reduced_tail and net.stem[0].in_channels == 480
    x = torch.randn(1, 3, 192, 256)
    with torch.no_grad():
        full = net(x)
        low = net(x, full_size=False)
    assert len(full) == cfg.loops + 1 == 3
    for f, o in zip(full, low):
        assert f['gate'].shape == (1, 5, 6, 8) and f['features'].shape == (1, 64, 6, 8)
        assert f['seg'].shape == (1, 19, 192, 256)
        assert f['depth_logits'].shape == (1, 5, 192, 256)
        assert o['seg'].shape == (1, 19, 48, 64) and o['log_depth'].shape == (1, 1, 6, 8)
        assert o['depth_logits'] is None
        # the full-size output is exactly the low-resolution one, upsampled
        up = torch.nn.functional.interpolate(o['seg'], size=(192, 256), mode='bilinear',
                                             align_corners=False)
        torch.testing.assert_close(up, f['seg'])
    # float16 on disk, as shipped: within the 15 MB a robot's package should carry
    n = sum(p.numel() for p in net.state_dict().values())
    assert 2 * n < 15e6


def test_detail_path_reaches_the_labels():
    """Stride-8 and -16 maps change the classes; without the path the classifier is a 1x1 conv."""
    torch.manual_seed(0)
    # the stride-8 path alone (the stride-4 one: test_fine_detail_scores_each_stride_4_cell)
    net = DepthGatedNet(ModelConfig.preset('fast', loops=0, recurrent=False,
                                           fine_channels=0)).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        detail, feat = net.features(x)
    detail, = detail
    detail.requires_grad_(True)
    seg = net.head(feat, 'predicted', None, detail=(detail,))['seg']
    assert detail.shape == (1, 64, 16, 16) and seg.shape == (1, 19, 16, 16)
    # each stride-8 label cell depends on the detail map at that cell
    grad, = torch.autograd.grad(seg[0, 3, 5, 7], detail)
    assert grad[0, :, 5, 7].abs().sum() > 0
    assert grad[0, :, 5, 8].abs().sum() == 0
    # and the detail map on the stride-16 features (bilinear: the 2x2 cells around it)
    fine, low, mid, _ = net.backbone(x)
    mid = mid.detach().requires_grad_(True)
    grad, = torch.autograd.grad(net.detail(fine, low, mid)[0][0, :, 5, 7].sum(), mid)
    assert grad[0, :, 2:4, 3:5].abs().sum() > 0 and grad[0, :, 0, 0].abs().sum() == 0
    plain = DepthGatedNet(ModelConfig.preset('fast', detail_channels=0, fine_channels=0))
    assert plain.detail is None and isinstance(plain.head.classifier[1], torch.nn.Conv2d)
    with pytest.raises(ValueError, match='recurrent_input: features'):
        ModelConfig.preset('fast', recurrent_input='prediction')


def test_stem_scale_is_image_level_context():
    """
    The stem's output scaled per channel by a sigmoid of the last map's mean over the image.

    Input tried: a 128 x 160 image; its last map with one corner cell changed, which moves the
    scale of every cell; the scale conv zeroed (sigmoid 0: 0.5 for every channel).
    """
    torch.manual_seed(0)
    net = DepthGatedNet(ModelConfig.preset('fast', stem_scale=True)).eval()
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        *_, high = net.backbone(x)
        scale = net.stem_scale(high)
        assert scale.shape == (1, 64, 1, 1)
        # relative only: an untrained trunk's eval-mode maps are tiny
        torch.testing.assert_close(net.features(x)[1], net.stem(high) * scale, atol=0,
                                   rtol=1e-5)
        # one corner cell of the last map changes the scale every cell's features get
        corner = high.clone()
        corner[..., 0, 0] += 5.0
        assert (net.stem_scale(corner) - scale).abs().min() > 0
        net.stem_scale[1].weight.zero_()
        torch.testing.assert_close(net.features(x)[1], 0.5 * net.stem(high), atol=0, rtol=1e-5)
    # tried and left off the preset (docs/results.md)
    assert ModelConfig.preset('fast').stem_scale is False
    assert DepthGatedNet(ModelConfig.preset('fast')).stem_scale is None


def test_fine_detail_scores_each_stride_4_cell():
    """
    With fine_channels, labels come out at stride 4: stride-8 scores upsampled plus the fine map's.

    Input tried: a 128 x 128 image through the fast preset with fine_channels 16; the gradient of
    one stride-4 score; the fine conv zeroed (then the scores are the stride-8 ones upsampled,
    plus the fine classifier's bias).
    """
    torch.manual_seed(0)
    net = DepthGatedNet(ModelConfig.preset('fast', fine_channels=16)).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        (detail, fine), feat = net.features(x)
    assert detail.shape == (1, 64, 16, 16) and fine.shape == (1, 16, 32, 32)
    fine.requires_grad_(True)
    seg = net.head(feat, 'predicted', None, detail=(detail, fine))['seg']
    assert seg.shape == (1, 19, 32, 32)
    grad, = torch.autograd.grad(seg[0, 3, 11, 14], fine)
    assert torch.nonzero(grad[0].abs().sum(0)).tolist() == [[11, 14]]
    # the fine map itself is a 3x3 conv of the backbone's stride-4 map
    b_fine, low, mid, _ = net.backbone(x)
    b_fine = b_fine.detach().requires_grad_(True)
    grad, = torch.autograd.grad(net.detail(b_fine, low, mid)[1][0, :, 11, 14].sum(), b_fine)
    assert torch.nonzero(grad[0].abs().sum(0)).tolist() == [
        [y, x] for y in range(10, 13) for x in range(13, 16)]
    with torch.no_grad():
        cls = net.head.classifier
        coarse = torch.nn.functional.interpolate(
            cls(feat, detail), size=(32, 32), mode='bilinear', align_corners=False)
        want = coarse + cls.fine.bias[None, :, None, None]
        cls.fine.weight.zero_()
        torch.testing.assert_close(cls(feat, detail, fine), want)
    with pytest.raises(ValueError, match='needs detail_channels'):
        ModelConfig.preset('fast', fine_channels=16, detail_channels=0)
    assert ModelConfig.preset('fast').fine_channels == 8


@pytest.mark.parametrize('kernel', [1, 3])
def test_detail_kernel_is_the_stride_8_receptive_field(kernel):
    torch.manual_seed(0)
    net = DepthGatedNet(ModelConfig.preset('fast', detail_kernel=kernel)).eval()
    fine, low, mid, _ = net.backbone(torch.randn(1, 3, 128, 128))
    low = low.detach().requires_grad_(True)
    grad, = torch.autograd.grad(net.detail(fine, low, mid)[0][0, :, 5, 7].sum(), low)
    reached = torch.nonzero(grad[0].abs().sum(0)).tolist()
    r = kernel // 2
    assert reached == [[y, x] for y in range(5 - r, 6 + r) for x in range(7 - r, 8 + r)]
    with pytest.raises(ValueError, match='detail_kernel must be 1 or 3, got 5'):
        ModelConfig.preset('fast', detail_kernel=5)


@pytest.mark.parametrize('name', ['lraspp_mobilenet_v3_large', 'deeplabv3_mobilenet_v3_large'])
def test_peer_is_torchvisions_network(name, tmp_path):
    """A peer computes what torchvision's model computes, and survives a checkpoint."""
    cfg = ModelConfig(architecture=name, gate_source='none', recurrent=False, loops=0)
    torch.manual_seed(0)
    peer = build_model(cfg).eval()
    assert isinstance(peer, PeerNet)
    ref = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=19,
                                      aux_loss=False).eval()
    ref.load_state_dict(peer.net.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = peer(x)
        torch.testing.assert_close(out[0]['seg'], ref(x)['out'])
        # full_size=False stops before torchvision's own upsampling: the same scores, smaller
        low = peer(x, full_size=False)[0]['seg']
    assert low.shape[-2:] == ((8, 12) if name.startswith('lraspp') else (4, 6))
    torch.testing.assert_close(torch.nn.functional.interpolate(
        low, size=(64, 96), mode='bilinear', align_corners=False), out[0]['seg'])
    assert len(out) == 1 and out[0]['log_depth'] is None and out[0]['gate'] is None
    assert peer.gates == ('none',)
    with pytest.raises(ValueError, match='has no gate'):
        peer(x, gate='predicted')
    with pytest.raises(ValueError, match='no recurrent module'):
        peer(x, loops=1)
    save_checkpoint(tmp_path / 'peer.pt', peer, INFO)
    loaded, _, _ = load_checkpoint(tmp_path / 'peer.pt')
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0]['seg'], out[0]['seg'])
    with pytest.raises(ValueError, match='needs gate_source: none'):
        ModelConfig(architecture=name)


def test_peer_predicts_labels_without_depth(tmp_path):
    from depthgate_ros.evaluation import evaluate_dataset
    from depthgate_ros.inference import Predictor
    from depthgate_ros.training.datasets import SyntheticStreetDataset
    torch.manual_seed(0)
    peer = build_model(ModelConfig(architecture='lraspp_mobilenet_v3_large',
                                   gate_source='none', recurrent=False, loops=0))
    predictor = Predictor(peer, INFO, device='cpu')
    data = SyntheticStreetDataset(2, 1_000_000, (64, 128))
    p = predictor.predict(data[0]['rgb'])
    assert p.labels.shape == (64, 128) and p.depth is None and p.gate is None
    r = evaluate_dataset(predictor, data)['final']
    assert 0 <= r['miou'] <= 1 and r['depth']['pixels'] == 0


def test_peer_through_depthgate_eval(tmp_path):
    """
    The evaluation CLI with its picture grid on a peer: no depth column, no crash.

    Input tried: a random LR-ASPP checkpoint, 2 synthetic frames at 64 x 96 (it failed on
    colouring the missing depth map once).
    """
    import json
    from depthgate_ros.cli.evaluate import main as eval_main
    from depthgate_ros.model.checkpoint import save_checkpoint
    torch.manual_seed(0)
    peer = build_model(ModelConfig(architecture='lraspp_mobilenet_v3_large',
                                   gate_source='none', recurrent=False, loops=0))
    path = save_checkpoint(tmp_path / 'peer.pt', peer, INFO)
    out = tmp_path / 'eval'
    assert eval_main(['--checkpoint', str(path), '--synthetic-frames', '2', '--synthetic-size',
                      '64', '96', '--grid-frames', '2', '--out', str(out)]) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert (out / 'grid.png').stat().st_size > 0 and 'final' in json.dumps(metrics)


def test_training_config_takes_a_preset():
    stages = [{'name': 's', 'iterations': 1}]
    cfg = from_dict({'model': {'preset': 'fast', 'channels': 64}, 'stages': stages})
    built = ModelConfig.from_dict(cfg.model)
    assert built.backbone == 'mobilenet_v3_large' and built.channels == 64
    with pytest.raises(ConfigError, match="model.preset 'fastest' is not one of"):
        from_dict({'model': {'preset': 'fastest'}, 'stages': stages})
    with pytest.raises(ConfigError, match='unknown config key stages'):
        from_dict({'stages': [{'name': 's', 'iterations': 1, 'model': {'preset': 'fast'}}]})


def test_bundled_models_by_name(tmp_path, monkeypatch):
    """Bundled names and their aliases name the package's files; anything else is a path."""
    assert None not in (bundled_checkpoint('street'), bundled_checkpoint('synthetic_fast'))
    assert resolve_model('default') == bundled_checkpoint('street')
    assert resolve_model('fast') == bundled_checkpoint('synthetic_fast')
    assert resolve_model('synthetic_resnet18').name == 'synthetic_resnet18.pt'
    assert resolve_model('model.pt').name == 'model.pt'
    assert resolve_model(tmp_path / 'fast') == tmp_path / 'fast'
    # a build without the file says so by name, through the loader every tool uses
    monkeypatch.setitem(__import__('depthgate_ros.weights', fromlist=['x']).BUNDLED,
                        'synthetic_fast', 'missing.pt')
    with pytest.raises(CheckpointNotFoundError, match="no bundled model 'fast'"):
        load_checkpoint('fast')
