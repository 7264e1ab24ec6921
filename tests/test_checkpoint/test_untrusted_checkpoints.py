"""Checkpoints are untrusted input: every tool refuses a malicious pickle.

A file carrying a pickle payload (a ``__reduce__`` that runs a command or
writes a file) is given to every tool that takes a checkpoint, and to the
backbone's pretrained loading. Each must fail with one ``error:`` line
naming the file, exit 2, write no output, and never run the payload: the
payload's side effect (a file it would create) must not exist afterwards.
The first test shows the payload is live: an unsafe ``torch.load`` runs it.

Broken (not malicious) files get clear errors too: a truncated or corrupt
file, a checkpoint of another arch, and a deploy checkpoint given to a
train-time config.
"""
import builtins
import os

import pytest
import torch

from mmseg_repvgg.errors import CheckpointError
from mmseg_repvgg.models import RepVGG

TINY_ARCH = dict(num_blocks=(1, 1, 2, 1), width_factor=(0.25, ) * 4)


class CommandPayload:
    """Unpickling runs ``touch FLAG`` in a shell."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return os.system, (f'touch {self.flag}', )


class FilePayload:
    """Unpickling creates FLAG (``open(FLAG, 'w')``)."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return builtins.open, (self.flag, 'w')


PAYLOADS = {'command': CommandPayload, 'file': FilePayload}


@pytest.fixture(params=sorted(PAYLOADS))
def evil(request, tmp_path, tiny_seg_checkpoint):
    """(path, flag): a real checkpoint with a payload beside its weights."""
    flag = tmp_path / f'pwned_by_{request.param}'
    checkpoint = torch.load(tiny_seg_checkpoint, weights_only=True)
    checkpoint['meta']['note'] = PAYLOADS[request.param](flag)
    path = tmp_path / f'evil_{request.param}.pth'
    torch.save(checkpoint, path)
    return path, flag


def assert_refused(code, stderr, path, flag):
    assert not flag.exists(), 'the payload ran'
    lines = stderr.strip().splitlines()
    assert code == 2, stderr[-2000:]
    assert lines and lines[-1].startswith(
        f'error: {path}: refused to load'), stderr[-2000:]
    assert 'Traceback' not in stderr, stderr[-2000:]


def test_payload_is_live_when_loaded_unsafely(evil):
    path, flag = evil
    torch.load(path, weights_only=False)  # what mmengine 0.10.7 did
    assert flag.exists()


def test_train_resume_refuses(evil, tiny_seg_cfg, tmp_path, run_tool):
    path, flag = evil
    code, err = run_tool('train', tiny_seg_cfg.filename, '--resume', path,
                         '--work-dir', tmp_path / 'work')
    assert_refused(code, err, path, flag)
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_train_load_from_refuses(evil, tiny_seg_cfg, tmp_path, run_tool):
    path, flag = evil
    code, err = run_tool('train', tiny_seg_cfg.filename, '--work-dir',
                         tmp_path / 'work', '--cfg-options',
                         f'load_from={path}')
    assert_refused(code, err, path, flag)


def test_test_tool_refuses(evil, tiny_seg_cfg, tmp_path, run_tool):
    path, flag = evil
    code, err = run_tool('test', tiny_seg_cfg.filename, path, '--work-dir',
                         tmp_path / 'work')
    assert_refused(code, err, path, flag)


def test_reparam_tool_refuses(evil, tiny_seg_cfg, tmp_path, run_tool):
    path, flag = evil
    out = tmp_path / 'deploy.pth'
    code, err = run_tool('reparam', tiny_seg_cfg.filename, path, out,
                         '--shape', 32, 64)
    assert_refused(code, err, path, flag)
    assert not out.exists() and not out.with_suffix('.py').exists()


def test_export_onnx_tool_refuses(evil, tiny_seg_cfg, tmp_path, run_tool):
    path, flag = evil
    out = tmp_path / 'model.onnx'
    code, err = run_tool('export_onnx', tiny_seg_cfg.filename, path, '--out',
                         out, '--shape', 32, 64)
    assert_refused(code, err, path, flag)
    assert not out.exists()


def test_benchmark_tool_refuses(evil, tiny_seg_cfg, tmp_path, run_tool):
    path, flag = evil
    out_dir = tmp_path / 'bench'
    code, err = run_tool('benchmark', '--baselines', '--miou-check',
                         tiny_seg_cfg.filename, path, '--out-dir', out_dir)
    assert_refused(code, err, path, flag)
    assert not out_dir.exists()


def test_convert_checkpoint_tool_refuses(evil, tmp_path, run_tool):
    path, flag = evil
    out = tmp_path / 'converted.pth'
    code, err = run_tool(
        'convert_checkpoint', path, out, '--arch',
        '{"num_blocks": [1, 1, 2, 1], '
        '"width_factor": [0.25, 0.25, 0.25, 0.25]}')
    assert_refused(code, err, path, flag)
    assert not out.exists()


@pytest.mark.parametrize('init', ['RepVGGPretrained', 'Pretrained'])
def test_backbone_pretrained_refuses(evil, init):
    path, flag = evil
    backbone = RepVGG(
        TINY_ARCH, init_cfg=dict(type=init, checkpoint=str(path)))
    with pytest.raises(CheckpointError, match='refused to load'):
        backbone.init_weights()
    assert not flag.exists()
