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

"""Checkpoints: round trip, and one distinct error per kind of bad file."""
import os

from depthgate_ros.data.labels import CITYSCAPES_COLORS, CITYSCAPES_NAMES
from depthgate_ros.model.checkpoint import (CheckpointMismatchError, CheckpointNotFoundError,
                                            CorruptCheckpointError, load_checkpoint, ModelInfo,
                                            NotACheckpointError, read_checkpoint, save_checkpoint,
                                            UnsafeCheckpointError)
import pytest
import torch

INFO = ModelInfo(CITYSCAPES_NAMES, CITYSCAPES_COLORS, provenance={'dataset': 'synthetic',
                                                                  'iterations': 12})


@pytest.fixture
def saved(tmp_path, make_model):
    model = make_model(seed=5, tied=True, depth_edges=(2.0, 4.0, 8.0, 16.0)).eval()
    # Move BN statistics off their defaults so the round trip has to carry buffers too.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
    path = save_checkpoint(tmp_path / 'model.pt', model, INFO, extra={'iteration': 12})
    return path, model


def test_round_trip_gives_identical_outputs(saved):
    path, model = saved
    loaded, info, extra = load_checkpoint(path)
    assert loaded.cfg == model.cfg and not loaded.training
    assert info == INFO and extra == {'iteration': 12}
    torch.testing.assert_close(loaded.depth_edges, torch.tensor([2.0, 4.0, 8.0, 16.0]))
    x = torch.randn(1, 3, 45, 67)
    depth = torch.rand(1, 1, 45, 67) * 20
    with torch.no_grad():
        for gate in ('predicted', 'sensor', 'average'):
            a = model(x, depth, loops=2, gate=gate)
            b = loaded(x, depth, loops=2, gate=gate)
            for oa, ob in zip(a, b):
                assert torch.equal(oa['seg'], ob['seg'])
                assert torch.equal(oa['log_depth'], ob['log_depth'])


def test_save_is_atomic_and_leaves_no_temp_files(saved, monkeypatch):
    path, model = saved
    assert sorted(os.listdir(path.parent)) == ['model.pt']
    before = path.read_bytes()
    real_save = torch.save

    def interrupted(obj, f, *args, **kwargs):      # half the bytes written, then the crash
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, 'save', interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, INFO, extra={'iteration': 13})
    # the old checkpoint is intact and still loads; no temp file is left beside it
    assert path.read_bytes() == before and sorted(os.listdir(path.parent)) == ['model.pt']
    assert load_checkpoint(path)[2] == {'iteration': 12}


def test_saved_file_has_the_mode_open_would_give(saved, tmp_path):
    """Input tried: umask 022 and 077; a private temp file must not become a private model."""
    _, model = saved
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            path = save_checkpoint(tmp_path / f'{umask:o}' / 'model.pt', model, INFO)
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == mode


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match='not found'):
        load_checkpoint(tmp_path / 'nope.pt')


def test_truncated_file_is_corrupt(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    bad = tmp_path / 'truncated.pt'
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match='corrupt'):
        load_checkpoint(bad)
    text = tmp_path / 'notes.pt'
    text.write_text('these are not weights')
    with pytest.raises(CorruptCheckpointError, match='corrupt'):
        load_checkpoint(text)


def test_bare_state_dict_is_not_a_checkpoint(saved, tmp_path):
    _, model = saved
    bare = tmp_path / 'bare.pt'
    torch.save(model.state_dict(), bare)
    with pytest.raises(NotACheckpointError, match='not a depthgate_ros checkpoint'):
        load_checkpoint(bare)
    tensor_file = tmp_path / 'tensor.pt'
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(NotACheckpointError, match='Tensor'):
        load_checkpoint(tensor_file)


class Payload:
    """Stands for anything a malicious file could smuggle: unpickling it runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_pickled_callable_is_refused_and_never_run(saved, tmp_path):
    path, _ = saved
    marker = tmp_path / 'code_ran'
    payload = torch.load(path, weights_only=True)
    evil = tmp_path / 'evil.pt'
    torch.save({**payload, 'extra': {'hook': Payload(marker)}}, evil)
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.save({**payload, 'extra': {'fn': os.getcwd}}, evil)  # a bare function reference
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        read_checkpoint(evil)


def test_architecture_mismatch(saved, tmp_path):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload['config']['channels'] = 48  # config no longer describes the weights
    bad = tmp_path / 'mismatch.pt'
    torch.save(payload, bad)
    with pytest.raises(CheckpointMismatchError, match='do not match the architecture'):
        load_checkpoint(bad)
    payload = torch.load(path, weights_only=True)
    payload['config']['tied'] = False   # untied expects five kernels, the file holds one
    torch.save(payload, bad)
    with pytest.raises(CheckpointMismatchError, match='missing'):
        load_checkpoint(bad)


def test_class_count_mismatch(saved, tmp_path):
    path, _ = saved
    with pytest.raises(CheckpointMismatchError, match='19 classes, expected 40'):
        load_checkpoint(path, num_classes=40)
    payload = torch.load(path, weights_only=True)
    payload['info']['class_names'] = payload['info']['class_names'][:-1]
    payload['info']['colors'] = payload['info']['colors'][:-1]
    bad = tmp_path / 'classes.pt'
    torch.save(payload, bad)
    with pytest.raises(CheckpointMismatchError, match='19 classes but 18 names'):
        load_checkpoint(bad)


def test_saving_with_wrong_class_names_is_refused(make_model, tmp_path):
    with pytest.raises(CheckpointMismatchError, match='19 classes'):
        save_checkpoint(tmp_path / 'm.pt', make_model(),
                        ModelInfo(('a', 'b'), ((0, 0, 0), (1, 1, 1))))
    assert not (tmp_path / 'm.pt').exists()


def test_packed_half_precision_checkpoint(saved, tmp_path):
    from depthgate_ros.cli.pack_model import main as pack
    path, model = saved
    dst = tmp_path / 'packed.pt'
    assert pack([str(path), str(dst), '--note', 'test']) == 0
    assert dst.stat().st_size < 0.6 * path.stat().st_size
    packed, info, extra = load_checkpoint(dst)
    assert extra == {} and info.provenance['packed_from'] == str(path)
    assert next(packed.parameters()).dtype == torch.float32
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        a, b = model(x, loops=2)[-1], packed(x, loops=2)[-1]
    torch.testing.assert_close(a['seg'], b['seg'], rtol=0.02, atol=0.02)


def test_packing_sets_the_default_loop_count(saved, tmp_path, capsys):
    from depthgate_ros.cli.pack_model import main as pack
    path, model = saved
    assert model.cfg.loops == 2
    assert pack([str(path), str(tmp_path / 'one.pt'), '--loops', '1']) == 0
    packed, _, _ = load_checkpoint(tmp_path / 'one.pt')
    assert packed.cfg.loops == 1
    with torch.no_grad():
        assert len(packed(torch.randn(1, 3, 40, 56))) == 2       # loop 0 and one refinement
        assert len(packed(torch.randn(1, 3, 40, 56), loops=2)) == 3
    # a count the model cannot run: refused, nothing written
    assert pack([str(path), str(tmp_path / 'bad.pt'), '--loops', '-1']) == 2
    assert 'loops' in capsys.readouterr().err and not (tmp_path / 'bad.pt').exists()
