"""The digest of our checkpoints' tensors: written by every writer of ours,
checked by the weights-only loader; files without one load as before."""
import sys
from pathlib import Path

import pytest
import torch

from mmseg_repvgg.checkpoint import (convert_file, load_pretrained,
                                     safe_torch_load)
from mmseg_repvgg.checkpoint.digest import DIGEST_KEY, tensor_digest
from mmseg_repvgg.engine.hooks import AtomicCheckpointHook
from mmseg_repvgg.errors import CheckpointError
from mmseg_repvgg.models.backbones import RepVGG

sys.path.insert(0, str(Path(__file__).parents[1] / 'test_tools'))
from test_tool_errors import flip_tensor_byte  # noqa: E402


def _training_checkpoint() -> dict:
    """What mmengine's Runner saves: weights, optimizer state, meta."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    return dict(
        meta=dict(epoch=1, iter=2),
        state_dict=model.state_dict(),
        optimizer=optimizer.state_dict(),
        param_schedulers=[dict(last_epoch=1)])


def test_checkpoint_hook_adds_the_digest_and_a_flipped_byte_is_refused(
        tmp_path):
    checkpoint = _training_checkpoint()
    AtomicCheckpointHook(interval=1).before_save_checkpoint(None, checkpoint)
    assert checkpoint['meta'][DIGEST_KEY] == tensor_digest(checkpoint)
    torch.save(checkpoint, tmp_path / 'epoch_1.pth')
    loaded = safe_torch_load(tmp_path / 'epoch_1.pth')
    assert torch.equal(loaded['optimizer']['state'][0]['momentum_buffer'],
                       checkpoint['optimizer']['state'][0]['momentum_buffer'])
    flip_tensor_byte(tmp_path / 'epoch_1.pth', tmp_path / 'flipped.pth')
    with pytest.raises(CheckpointError, match='flipped.pth: damaged'):
        safe_torch_load(tmp_path / 'flipped.pth')


def test_every_tensor_counts():
    """Weights and optimizer state alike; meta does not."""
    checkpoint = _training_checkpoint()
    digest = tensor_digest(checkpoint)
    checkpoint['meta']['note'] = 'changed'
    assert tensor_digest(checkpoint) == digest
    checkpoint['optimizer']['state'][0]['momentum_buffer'][0] += 1
    assert tensor_digest(checkpoint) != digest


def test_checkpoint_without_digest_loads_as_before(tmp_path):
    """mmseg's, mmpretrain's and older checkpoints carry none: even a
    flipped byte loads (nothing to check it against)."""
    torch.save(_training_checkpoint(), tmp_path / 'mmseg.pth')
    flip_tensor_byte(tmp_path / 'mmseg.pth', tmp_path / 'flipped.pth')
    for name in ('mmseg.pth', 'flipped.pth'):
        assert DIGEST_KEY not in safe_torch_load(tmp_path / name)['meta']


def test_converted_checkpoint_carries_the_digest(tmp_path):
    arch = dict(num_blocks=(1, 1, 1, 1), width_factor=(0.25, ) * 4)
    src = tmp_path / 'src.pth'
    torch.save(dict(state_dict=RepVGG(arch).state_dict()), src)
    convert_file(str(src), str(tmp_path / 'ours.pth'), arch)
    assert DIGEST_KEY in safe_torch_load(tmp_path / 'ours.pth')['meta']
    load_pretrained(RepVGG(arch), str(tmp_path / 'ours.pth'))
    flip_tensor_byte(tmp_path / 'ours.pth', tmp_path / 'flipped.pth')
    with pytest.raises(CheckpointError, match='damaged'):
        load_pretrained(RepVGG(arch), str(tmp_path / 'flipped.pth'))
