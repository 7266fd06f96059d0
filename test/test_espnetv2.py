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
The ESPNetv2 backbone: its shapes, and loading files laid out as the published ones.

Whether the published Cityscapes files themselves run right is measured, not tested here (no
test downloads): run whole by ESPNetv2Segmentation they label CamVid's test split as their
authors' code does (docs/results.md, "Real images").
"""
from depthgate_ros.model import build_model, ModelConfig
from depthgate_ros.model.backbone import Backbone
from depthgate_ros.model.espnetv2 import ESPNetv2Encoder, ESPNetv2Segmentation
import pytest
import torch


@pytest.mark.parametrize('width, channels', [(0.5, (32, 64, 128)), (1.0, (64, 128, 256)),
                                             (2.0, (128, 256, 512))])
def test_strides_and_widths(width, channels):
    enc = ESPNetv2Encoder(width).eval()
    # 360 x 480 (CamVid) is not a multiple of 16: every stage rounds up, as a stride-2 conv
    with torch.no_grad():
        fine, low, mid = enc(torch.randn(1, 3, 360, 480))
    assert fine.shape == (1, channels[0], 90, 120)
    assert low.shape == (1, channels[1], 45, 60)
    assert mid.shape == (1, channels[2], 23, 30)


def _published(width, tmp_path, kind='segmentation'):
    """Write a file in the published layout: a segmentation net, or a classifier's keys."""
    torch.manual_seed(0)
    net = ESPNetv2Segmentation(width)
    for m in net.modules():          # statistics that are not the defaults, so they must load
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    state = net.state_dict()
    if kind == 'classification':
        state = {k[len('base_net.'):]: v for k, v in state.items() if k.startswith('base_net.')}
        state['level5_0.act.weight'] = torch.zeros(3)
        state['classifier.weight'] = torch.zeros(1000, 3)
    path = tmp_path / f'espnetv2_s_{width}.pth'
    torch.save(state, path)
    return net.eval(), path


@pytest.mark.parametrize('kind', ['segmentation', 'classification'])
def test_backbone_loads_a_published_layout_file(tmp_path, kind):
    net, path = _published(1.0, tmp_path, kind)
    bb = Backbone('espnetv2', frozen_bn=True, weights_path=path, output_stride=16,
                  width_mult=1.0).eval()
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        want = net.base_net(image)
        got = bb(image)
    for a, b in zip(got[:3], want):
        torch.testing.assert_close(a, b)
    assert got[3] is got[2]                       # the last map is the stride-16 one
    # frozen: the statistics are buffers, nothing of BatchNorm trains
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())


def test_a_file_of_another_width_is_refused_with_its_name(tmp_path):
    _, path = _published(0.5, tmp_path)
    with pytest.raises(ValueError, match=r'espnetv2_s_0.5.pth does not match .*shape'):
        Backbone('espnetv2', weights_path=path, output_stride=16, width_mult=1.0)


def test_street_preset_runs_every_gate_and_the_head_reads_stride_16():
    cfg = ModelConfig.preset('street')
    assert (cfg.backbone, cfg.output_stride) == ('espnetv2', 16)
    model = build_model(cfg).eval()
    image = torch.randn(1, 3, 96, 128)
    depth = torch.full((1, 1, 96, 128), 12.0)
    with torch.no_grad():
        for gate in ('predicted', 'hybrid', 'sensor', 'average'):
            outs = model(image, depth if gate in ('hybrid', 'sensor') else None, gate=gate)
            assert len(outs) == cfg.loops + 1
            assert outs[-1]['seg'].shape == (1, 19, 96, 128)
            assert outs[-1]['gate'].shape == (1, 5, 6, 8)


@pytest.mark.parametrize('change, match', [({'output_stride': 32}, 'output_stride 32'),
                                           ({'backbone_width': 0.75}, 'backbone_width'),
                                           ({'backbone_reduced_tail': True}, 'reduced tail')])
def test_street_preset_refuses_what_espnetv2_does_not_have(change, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig.preset('street', **change)


def test_fine_stride_2_reads_the_encoders_stride_2_map():
    model = build_model(ModelConfig.preset('street', fine_stride=2)).eval()
    assert model.backbone.fine_channels == model.backbone.encoder.channels[0]
    image = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        fine = model.backbone(image)[0]
        out = model(image, loops=1, full_size=False)[-1]
    assert fine.shape[-2:] == (48, 64)
    assert out['seg'].shape == (1, 19, 48, 64)           # scores at stride 2
    with torch.no_grad():
        four = build_model(ModelConfig.preset('street')).eval()(image, loops=1,
                                                                full_size=False)[-1]
    assert four['seg'].shape == (1, 19, 24, 32)          # the preset's own: stride 4


@pytest.mark.parametrize('change, match', [
    ({'fine_stride': 3}, 'fine_stride'),
    ({'fine_stride': 2, 'fine_channels': 0}, 'fine_stride'),
    ({'fine_stride': 2, 'backbone': 'resnet18', 'output_stride': 8, 'backbone_width': 1.0},
     'fine_stride')])
def test_fine_stride_2_needs_espnetv2_and_a_fine_path(change, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig.preset('street', **change)
