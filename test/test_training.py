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

"""Training entry point: stage-wise run, resume equivalence, DDP, config and data errors."""
import csv
import os
from pathlib import Path
import socket
import subprocess
import sys

from depthgate_ros.cli.train import main as train_main
from depthgate_ros.model.checkpoint import load_checkpoint
from depthgate_ros.training.config import ConfigError, load_config
import pytest
import torch
import yaml

TINY = {
    'seed': 3,
    'device': 'cpu',
    'data': {'dataset': 'synthetic', 'synthetic_train_frames': 8, 'synthetic_val_frames': 2,
             'image_size': [64, 128], 'crop': [64, 128], 'scale_range': [0.75, 1.25],
             'num_workers': 0},
    'model': {'backbone': 'resnet18', 'channels': 16, 'depth_channels': [8, 8]},
    'optim': {'lr': 0.01, 'batch_size': 2, 'freeze_bn': 'backbone'},
    'checkpoint_every': 2, 'val_every': 0, 'log_every': 1,
    'stages': [
        {'name': 'baseline', 'iterations': 4,
         'model': {'gate_source': 'none', 'recurrent': False, 'loops': 0}},
        {'name': 'gating', 'iterations': 3,
         'model': {'gate_source': 'predicted', 'recurrent': True, 'loops': 1},
         'loss': {'seg': [1.0, 0.5], 'depth_reg': 0.1, 'depth_cls': 0.1}},
    ],
}


def _config(tmp_path, name='run', **changes):
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    raw['output_dir'] = str(tmp_path / name)
    for key, value in changes.items():
        section, _, leaf = key.rpartition('.')
        (raw[section] if section else raw)[leaf] = value
    path = tmp_path / f'{name}.yaml'
    path.write_text(yaml.safe_dump(raw))
    return path


def _losses(path):
    with open(path) as f:
        return [float(r['loss']) for r in csv.DictReader(f) if r['loss']]


def test_two_stage_run_end_to_end(tmp_path):
    # frozen_bn off: the backbone has BatchNorm layers of its own for freeze_bn to hold
    assert train_main(['--config', str(_config(tmp_path, **{'model.frozen_bn': False}))]) == 0
    run = tmp_path / 'run'
    model, info, extra = load_checkpoint(run / 'model.pt')
    assert model.cfg.gate_source == 'predicted' and model.cfg.loops == 1
    assert extra['stage'] == 'gating' and extra['iteration'] == 3
    assert info.provenance['dataset'] == 'synthetic'
    assert info.focal_px == 560.0 * 128 / 512      # the renderer's camera at 128 px width
    # depth bins were computed from the training depths: equal-count quantiles, ascending
    edges = model.cfg.depth_edges
    assert len(edges) == 4 and all(a < b for a, b in zip(edges, edges[1:]))
    assert len(_losses(run / 'baseline' / 'log.csv')) == 4
    assert not (run / 'gating' / 'last.pt').exists()   # finished stages keep final + best
    assert (run / 'gating' / 'best.pt').is_file()
    # the gating stage started from the baseline's trained backbone
    base, _, _ = load_checkpoint(run / 'baseline' / 'final.pt')
    # freeze_bn: backbone: its BatchNorm layers never counted a batch (eval mode all along),
    # the heads' counted each of the 4 baseline iterations (training mode)
    tracked = {name: int(b) for name, b in base.named_buffers()
               if name.endswith('num_batches_tracked')}
    backbone = {n: v for n, v in tracked.items() if n.startswith('backbone.')}
    assert len(backbone) == 20 and set(backbone.values()) == {0}       # ResNet-18's 20 BNs
    heads = {n: v for n, v in tracked.items() if n.startswith('head.')}
    assert heads and set(heads.values()) == {4}, heads
    gating_first = dict(base.named_parameters())['backbone.stem.0.weight']
    assert not torch.equal(gating_first, torch.nn.init.zeros_(gating_first.clone()))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    assert train_main(['--config', str(_config(tmp_path, 'straight'))]) == 0
    cfg = str(_config(tmp_path, 'interrupted'))
    assert train_main(['--config', cfg, '--max-steps', '3']) == 0      # stops mid-stage
    assert (tmp_path / 'interrupted' / 'baseline' / 'last.pt').is_file()
    assert not (tmp_path / 'interrupted' / 'model.pt').exists()
    assert train_main(['--config', cfg, '--resume', '--max-steps', '2']) == 0  # across stages
    # the last resume runs only the 2 gating steps left of 4 + 3: a run that silently started
    # over would end with the same weights (it is deterministic) but take 7 steps
    steps = []
    step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, 'step',
                        lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    assert train_main(['--config', cfg, '--resume']) == 0
    assert len(steps) == 2
    a, _, _ = load_checkpoint(tmp_path / 'straight' / 'model.pt')
    b, _, _ = load_checkpoint(tmp_path / 'interrupted' / 'model.pt')
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert _losses(tmp_path / 'straight/baseline/log.csv') == _losses(
        tmp_path / 'interrupted/baseline/log.csv')


def test_existing_run_is_not_overwritten_without_resume(tmp_path, capsys):
    cfg = str(_config(tmp_path))
    assert train_main(['--config', cfg, '--max-steps', '1']) == 0
    assert train_main(['--config', cfg]) == 2
    assert 'pass --resume' in capsys.readouterr().err


def test_ddp_two_cpu_processes_resumed_match_single_process(tmp_path):
    # Same global batch (2 ranks x 1 vs 1 x 2). BN statistics and dropout are per process on
    # CPU (SyncBatchNorm needs CUDA), so this comparison freezes BN and disables dropout; the
    # sampler sharding, gradient averaging and rank-0 logging are what is under test.
    common = {'optim.freeze_bn': 'all', 'data.scale_range': [1.0, 1.0],
              'data.max_rotation_deg': 0.0}
    stages = [{'name': 'only', 'iterations': 4,
               'model': {'gate_source': 'none', 'recurrent': False, 'loops': 0,
                         'dropout': 0.0}}]
    single = _config(tmp_path, 'single', stages=stages, **common)
    ddp = _config(tmp_path, 'ddp', stages=stages, **common)
    raw = yaml.safe_load(ddp.read_text())
    raw['optim']['batch_size'] = 1
    ddp.write_text(yaml.safe_dump(raw))
    assert train_main(['--config', str(single)]) == 0
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}

    def torchrun(*extra):
        with socket.socket() as s:      # torchrun's static rendezvous needs a concrete port
            s.bind(('127.0.0.1', 0))
            port = str(s.getsockname()[1])
        proc = subprocess.run(
            [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
             '--master_addr', '127.0.0.1', '--master_port', port, '-m',
             'depthgate_ros.cli.train', '--config', str(ddp), *extra],
            env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr
    # interrupted after 2 of 4 iterations and resumed: the same losses as one process
    torchrun('--max-steps', '2')
    assert len(_losses(tmp_path / 'ddp' / 'only' / 'log.csv')) == 2
    assert 'resumed at iteration 2' in torchrun('--resume')
    a = _losses(tmp_path / 'single' / 'only' / 'log.csv')
    b = _losses(tmp_path / 'ddp' / 'only' / 'log.csv')
    assert len(a) == len(b) == 4
    assert b == pytest.approx(a, rel=1e-4)
    # only rank 0 wrote files
    assert sorted(p.name for p in (tmp_path / 'ddp' / 'only').iterdir()) == [
        'best.pt', 'final.pt', 'log.csv']


def test_ddp_on_cuda_synchronises_batchnorm_and_keeps_freezing_it():
    # SyncBatchNorm runs only on CUDA (absent here); the conversion and the train mode after
    # it are checked without a device: every BatchNorm becomes a SyncBatchNorm inside the
    # model the runner freezes and saves, and freeze_bn still applies to them
    from conftest import small_config
    from depthgate_ros.model import DepthGatedNet
    from depthgate_ros.training.engine import set_train_mode, sync_batchnorm
    model = DepthGatedNet(small_config())
    bn = torch.nn.modules.batchnorm._BatchNorm
    names = [n for n, m in model.named_modules() if isinstance(m, bn)]
    assert sync_batchnorm(model, torch.device('cpu')) is model
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    net = sync_batchnorm(model, torch.device('cuda'))
    assert net is model
    synced = {n: m for n, m in model.named_modules() if isinstance(m, bn)}
    assert list(synced) == names and all(
        isinstance(m, torch.nn.SyncBatchNorm) for m in synced.values())
    for freeze, frozen in (('backbone', lambda n: n.startswith('backbone.')),
                           ('all', lambda n: True), ('none', lambda n: False)):
        set_train_mode(model, freeze)
        assert {n: m.training for n, m in synced.items()} == {
            n: not frozen(n) for n in synced}, freeze


def test_bad_config_key_and_unreadable_dataset_are_named(tmp_path, capsys):
    path = _config(tmp_path)
    assert train_main(['--config', str(path), 'optim.learning_rate=0.1']) == 2
    assert 'unknown config key optim.learning_rate' in capsys.readouterr().err
    assert train_main(['--config', str(path), 'stages.baseline.model.gate=none']) == 2
    assert 'stages[baseline].model.gate' in capsys.readouterr().err
    assert train_main(['--config', str(tmp_path / 'nope.yaml')]) == 2
    assert 'config file not found' in capsys.readouterr().err
    missing = tmp_path / 'no_such_cityscapes'
    assert train_main(['--config', str(path), 'data.dataset=cityscapes',
                       f'data.root={missing}']) == 2
    assert f'{missing}/leftImg8bit/train is missing' in capsys.readouterr().err
    with pytest.raises(ConfigError, match='multiples of 8'):
        load_config(path, ['data.crop=[60, 128]'])


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path, capsys):
    path = _config(tmp_path, **{'optim.lr': 1e12, 'optim.max_nonfinite': 2})
    assert train_main(['--config', str(path)]) == 2
    err = capsys.readouterr().err
    assert 'consecutive non-finite losses' in err and 'lower optim.lr' in err


def test_shipped_training_configs_load():
    from depthgate_ros.training.config import load_head_ablation
    root = Path(__file__).resolve().parents[1] / 'config'
    for path in [*root.glob('train_*.yaml'), root / 'ablation_backbone.yaml']:
        cfg = load_config(path)
        # the fast model and its peers train on renders exported once as a Cityscapes tree,
        # the street model on CamVid beside such renders
        assert cfg.stages and cfg.data.dataset == {
            'train_fast.yaml': 'cityscapes', 'train_peer.yaml': 'cityscapes',
            'train_street.yaml': 'camvid', 'train_street_peer.yaml': 'camvid',
            'train_street_distill.yaml': 'camvid',
            'train_street_balanced.yaml': 'camvid',
            'train_street_wide.yaml': 'camvid',
            'train_street_wide_trainval.yaml': 'camvid'}.get(path.name, 'synthetic')
        # the street model and its LR-ASPP peer are class-balanced alike
        assert cfg.data.class_weights == (
            'enet' if path.name in ('train_street_balanced.yaml', 'train_street_peer.yaml',
                                    'train_street_wide.yaml', 'train_street_wide_trainval.yaml')
            else 'none')
    # the street model's second stage goes on at half the first one's learning rate
    street = load_config(root / 'train_street_balanced.yaml')
    assert [(s.name, s.lr) for s in street.stages] == [('balanced', None),
                                                       ('balanced_low', street.optim.lr / 2)]
    # the wide street: the wider encoder's file, and street's head
    wide = load_config(root / 'train_street_wide.yaml')
    assert wide.model['backbone_width'] == 2.0 and wide.init_from == 'runs/street_s1.pt'
    assert wide.backbone_weights.endswith('espnetv2_s_2.0_city_1024x512.pth')
    # its second stage's recipe again, on train and val, from the two-stage wide street
    trainval = load_config(root / 'train_street_wide_trainval.yaml')
    assert trainval.init_from == 'runs/street_wide.pt' and trainval.backbone_weights is None
    assert {'dataset': 'camvid', 'root': 'data/CamVid', 'train_split': 'val'} in \
        trainval.data.also
    assert [(s.name, s.iterations) for s in trainval.stages] == [('wide_low', 600)] \
        and trainval.optim.lr == wide.stages[1].lr
    # the distillation stage has its teacher
    assert load_config(root / 'train_street_distill.yaml').distill.teacher.endswith(
        'espnetv2_s_2.0_city_1024x512.pth')
    camvid = load_head_ablation(root / 'ablation_heads_camvid.yaml')
    assert camvid.data.dataset == 'camvid' and camvid.data.val_split == 'test'
    heads = load_head_ablation(root / 'ablation_heads.yaml')
    assert [r['name'] for r in heads.rows][:5] == [
        'baseline', 'average', 'sensor', 'predicted', 'hybrid']
    assert heads.size[0] >= 256 and heads.eval_frames >= 200       # the ablation's protocol


def test_ablation_runs_variants_from_one_baseline_and_tabulates(tmp_path):
    from depthgate_ros.cli.ablation import main as ablation_main
    base = _config(tmp_path, 'base', stages=[{'name': 'baseline', 'iterations': 2, 'model': {
        'gate_source': 'none', 'recurrent': False, 'loops': 0}}])
    assert train_main(['--config', str(base)]) == 0
    spec = {'base_config': base.name, 'init_from': str(tmp_path / 'base' / 'model.pt'),
            'output_dir': str(tmp_path / 'abl'), 'iterations': 2, 'eval_frames': 2,
            'eval_size': [64, 128], 'device': 'cpu',
            'variants': [
                {'name': 'gt', 'model': {'gate_source': 'sensor', 'recurrent': False,
                                         'loops': 0}, 'test_gate': 'sensor'},
                {'name': 'pred', 'model': {'gate_source': 'predicted', 'recurrent': False,
                                           'loops': 0},
                 'loss': {'seg': 1.0, 'depth_reg': 0.1, 'depth_cls': 0.1}},
                {'name': 'loop1', 'init_from_variant': 'pred',
                 'model': {'gate_source': 'predicted', 'recurrent': True, 'loops': 1}}]}
    path = tmp_path / 'ablation.yaml'
    path.write_text(yaml.safe_dump(spec))
    assert ablation_main(['--config', str(path)]) == 0
    table = (tmp_path / 'abl' / 'results.md').read_text()
    assert '| gt | sensor |' in table and '| pred | predicted |' in table
    assert '| loop1 | predicted |' in table
    loop1, _, _ = load_checkpoint(tmp_path / 'abl' / 'loop1' / 'model.pt')
    pred, _, _ = load_checkpoint(tmp_path / 'abl' / 'pred' / 'model.pt')
    assert loop1.cfg.loops == 1 and pred.cfg.loops == 0
    # all variants share the baseline's starting point: the gt-depth variant's backbone moved
    # away from the same weights the pred variant started from
    first, _, _ = load_checkpoint(tmp_path / 'base' / 'model.pt')
    gt, _, _ = load_checkpoint(tmp_path / 'abl' / 'gt' / 'model.pt')
    assert not torch.equal(first.backbone.stem[0].weight, gt.backbone.stem[0].weight)


def test_init_from_with_backbone_weights_takes_the_backbone_from_the_weights(tmp_path):
    # A trained head moved onto another encoder (street's head on a wider ESPNetv2): the
    # backbone is the backbone_weights file's, every other tensor init_from's. Input tried: a
    # trained run's model.pt as init_from and a torchvision-layout resnet18 file of other
    # values as backbone_weights, trained one step at a learning rate too small to move them.
    import torchvision
    one = [{'name': 'baseline', 'iterations': 1,
            'model': {'gate_source': 'none', 'recurrent': False, 'loops': 0}}]
    assert train_main(['--config', str(_config(tmp_path, 'first', stages=one))]) == 0
    first, _, _ = load_checkpoint(tmp_path / 'first' / 'model.pt')
    torch.manual_seed(7)
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / 'resnet18.pth')
    cfg = _config(tmp_path, 'moved', stages=one, init_from=str(tmp_path / 'first' / 'model.pt'),
                  backbone_weights=str(tmp_path / 'resnet18.pth'), **{'optim.lr': 1e-9})
    assert train_main(['--config', str(cfg)]) == 0
    moved, _, _ = load_checkpoint(tmp_path / 'moved' / 'model.pt')
    got = moved.backbone.state_dict()
    conv1 = next(k for k, v in got.items() if k.endswith('weight') and v.dim() == 4)
    torch.testing.assert_close(got[conv1], resnet.conv1.weight)
    assert not torch.allclose(got[conv1], first.backbone.state_dict()[conv1])
    # the rest is init_from's (its parameters: BatchNorm statistics move in one step)
    was = dict(first.named_parameters())
    rest = [(k, p) for k, p in moved.named_parameters() if not k.startswith('backbone.')]
    assert len(rest) > 10
    for k, p in rest:
        torch.testing.assert_close(p, was[k], msg=k)


def test_init_from_a_backbone_of_another_width_is_refused(tmp_path, capsys):
    # Input tried: a width-0.5 ESPNetv2 run as init_from for a width-1.0 config (a fine-tuning
    # config whose preset no longer matches the checkpoint). Its backbone would start from
    # random weights under a trained head; the run stops and says which key to set.
    one = [{'name': 'baseline', 'iterations': 1,
            'model': {'gate_source': 'none', 'recurrent': False, 'loops': 0}}]
    street = {'preset': 'street', 'backbone_width': 0.5}
    assert train_main(['--config', str(_config(tmp_path, 'half', stages=one, model=street))]) == 0
    cfg = _config(tmp_path, 'one', stages=one, model={**street, 'backbone_width': 1.0},
                  init_from=str(tmp_path / 'half' / 'model.pt'))
    assert train_main(['--config', str(cfg)]) == 2
    assert 'model.backbone_width' in capsys.readouterr().err
    assert not (tmp_path / 'one' / 'model.pt').exists()


def test_gating_init_from_context_starts_where_the_baseline_stopped():
    from depthgate_ros.model import DepthGatedNet, ModelConfig
    from depthgate_ros.training.engine import gating_from_context
    torch.manual_seed(0)
    cfg = ModelConfig(backbone='resnet18', channels=16, depth_channels=(8, 8),
                      depth_edges=(5.0, 10.0, 20.0, 40.0), gate_source='none')
    plain = DepthGatedNet(cfg).eval()
    for bn in (m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    gated = DepthGatedNet(cfg.replace(gate_source='predicted'))
    state = plain.state_dict()
    own = gated.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fits.update(gating_from_context(state, own))
    assert not set(own) - set(fits)            # every gated tensor comes from the baseline
    gated.load_state_dict(fits)
    gated.eval()
    image = torch.randn(1, 3, 64, 96)
    far = torch.full((1, 1, 64, 96), 100.0)    # every pixel in bin 0: dilation 1, as the conv
    with torch.no_grad():
        ref = plain(image, loops=0)[0]['seg']
        got = gated(image, far, loops=0, gate='sensor')[0]['seg']
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_gating_init_from_context_refuses_depthwise_branches():
    # A full 3x3 kernel has no depthwise equivalent; copying it would fail on shapes deep
    # inside load_state_dict, so the engine says what to do instead.
    from depthgate_ros.model import DepthGatedNet, ModelConfig
    from depthgate_ros.training.engine import gating_from_context
    cfg = ModelConfig(backbone='resnet18', channels=16, depth_channels=(8, 8),
                      depth_edges=(5.0, 10.0, 20.0, 40.0), gate_source='none')
    state = DepthGatedNet(cfg).state_dict()
    own = DepthGatedNet(cfg.replace(gate_source='predicted', depthwise_branches=True)).state_dict()
    with pytest.raises(ValueError, match='depthwise'):
        gating_from_context(state, own)


def test_gating_init_is_validated(tmp_path, capsys):
    assert train_main(['--config', str(_config(tmp_path, gating_init='copy'))]) == 2
    assert 'gating_init' in capsys.readouterr().err


def test_gate_mix_draws_a_gate_per_batch_and_feeds_measured_depth(tmp_path, monkeypatch):
    from depthgate_ros.model.network import DepthGatedNet
    seen = []
    forward = DepthGatedNet.forward

    def spy(self, image, depth=None, loops=None, gate=None):
        if self.training:
            holes = None if depth is None else float(torch.isnan(depth).float().mean())
            seen.append((gate, holes))
        return forward(self, image, depth, loops, gate)

    monkeypatch.setattr(DepthGatedNet, 'forward', spy)
    stages = [{'name': 'mixed', 'iterations': 12,
               'model': {'gate_source': 'predicted', 'recurrent': False, 'loops': 0},
               'gate_mix': {'sensor': 0.4, 'hybrid': 0.3, 'predicted': 0.3}}]
    cfg = _config(tmp_path, stages=stages, **{'data.sensors': ['realsense_d435']})
    assert train_main(['--config', str(cfg)]) == 0
    gates = [g for g, _ in seen]
    assert len(gates) == 12 and set(gates) == {'sensor', 'hybrid', 'predicted'}
    for gate, holes in seen:
        if gate == 'predicted':
            assert holes is None
        else:   # the D435 sees ~10 m at most: a street frame is mostly holes, never none
            assert 0.3 < holes < 1.0
    # the draw depends on (seed, iteration) only: a second run draws the same gates
    seen.clear()
    assert train_main(['--config', str(_config(tmp_path, 'again', stages=stages,
                                               **{'data.sensors': ['realsense_d435']}))]) == 0
    assert [g for g, _ in seen] == gates


def test_gate_mix_and_sensors_are_validated(tmp_path, capsys):
    bad_mix = [{'name': 'x', 'iterations': 1, 'gate_mix': {'sensor': 1.0, 'lidar': 1.0}}]
    assert train_main(['--config', str(_config(tmp_path, 'a', stages=bad_mix))]) == 2
    assert 'gate_mix' in capsys.readouterr().err
    cfg = _config(tmp_path, 'b', **{'data.sensors': ['tof_9000']})
    assert train_main(['--config', str(cfg)]) == 2
    assert "data.sensors: unknown depth sensor 'tof_9000'" in capsys.readouterr().err
