"""Checkpoints are never left half-written (mmseg_repvgg.atomic_io).

Each test injects a fault in the middle of a save (a full disk, a failing
rename, a kill -9, a crash between the checkpoint and its pointer) and
checks that the previous checkpoint is still there and loads. Without the
patch applied on ``import mmseg_repvgg`` the first, the kill and the
``max_keep_ckpts`` tests fail: mmengine 0.10.7 truncates the old file
before writing and deletes the oldest kept checkpoint before saving.
"""
import os
import resource
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from mmengine.runner import Runner, save_checkpoint

from mmseg_repvgg.compat import safe_torch_load


def _checkpoint(value: float, numel: int = 16384) -> dict:
    return dict(
        meta=dict(iter=int(value)),
        state_dict=dict(weight=torch.full((numel, ), value)))


def _assert_holds(path, value: float) -> None:
    loaded = safe_torch_load(str(path))
    assert loaded['meta']['iter'] == int(value)
    assert torch.equal(loaded['state_dict']['weight'],
                       _checkpoint(value)['state_dict']['weight'])


def _temp_files(directory) -> list:
    return [p.name for p in directory.iterdir() if p.name.endswith('.tmp')]


@pytest.fixture
def file_size_limit():
    """Set RLIMIT_FSIZE (a full disk, as far as a write can tell)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Beyond the limit a write fails with EFBIG instead of killing us.
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def set_limit(nbytes: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))

    yield set_limit
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)


def test_disk_full_mid_write_keeps_previous_checkpoint(tmp_path,
                                                       file_size_limit):
    path = tmp_path / 'iter_2.pth'
    save_checkpoint(_checkpoint(1), str(path))
    size = path.stat().st_size
    file_size_limit(size // 2)  # the new file fails half-way
    with pytest.raises(OSError, match='too large'):
        save_checkpoint(_checkpoint(2), str(path))
    file_size_limit(resource.RLIM_INFINITY)
    assert path.stat().st_size == size
    _assert_holds(path, 1)
    assert _temp_files(tmp_path) == []


def test_failed_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'epoch_4.pth'
    save_checkpoint(_checkpoint(1), str(path))

    def failing_replace(src, dst):
        raise OSError('injected: rename failed')

    monkeypatch.setattr(os, 'replace', failing_replace)
    with pytest.raises(OSError, match='injected'):
        save_checkpoint(_checkpoint(2), str(path))
    monkeypatch.undo()
    _assert_holds(path, 1)
    assert _temp_files(tmp_path) == []


def test_saved_checkpoint_gets_the_mode_open_would_give(tmp_path):
    reference = tmp_path / 'plain'
    reference.write_bytes(b'')
    path = tmp_path / 'iter_1.pth'
    save_checkpoint(_checkpoint(1), str(path))
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(
        reference.stat().st_mode)
    _assert_holds(path, 1)


_SLOW_SAVE = textwrap.dedent("""
    import os, sys, time
    import torch
    import mmseg_repvgg  # applies the patch
    from mmengine.runner import save_checkpoint
    path, flag = sys.argv[1:3]
    state = dict(weight=torch.full((16384, ), 2.0))
    real_fsync = os.fsync
    def fsync_then_hang(fd):
        # Every byte of the new checkpoint is written, nothing renamed.
        real_fsync(fd)
        open(flag, 'w').close()
        time.sleep(60)
    os.fsync = fsync_then_hang
    save_checkpoint(dict(meta=dict(iter=2), state_dict=state), path)
""")


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    path, flag = tmp_path / 'iter_2.pth', tmp_path / 'mid_save'
    save_checkpoint(_checkpoint(1), str(path))
    proc = subprocess.Popen(
        [sys.executable, '-c', _SLOW_SAVE,
         str(path), str(flag)],
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, 'the save never started'
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup runs
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    _assert_holds(path, 1)
    # The killed save left its complete but unrenamed temporary file.
    assert len(_temp_files(tmp_path)) == 1


def _keep_one_runner(cfg, work_dir) -> Runner:
    """The tiny model, a checkpoint every iteration, only the last kept."""
    cfg.work_dir = str(work_dir)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=1)
    cfg.custom_hooks = []
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg.pop(key)
    return Runner.from_cfg(cfg)


@pytest.mark.parametrize('fail_at', ['checkpoint', 'last_checkpoint'])
def test_max_keep_ckpts_keeps_previous_until_new_is_safe(
        tmp_path, tiny_seg_cfg, monkeypatch, fail_at):
    """Crash while saving iter_2.pth, or between it and its pointer."""
    work_dir = tmp_path / 'keep_one'
    real_replace = os.replace

    def replace_failing_second(src, dst):
        if os.path.basename(dst) == {
                'checkpoint': 'iter_2.pth',
                'last_checkpoint': 'last_checkpoint'
        }[fail_at] and (work_dir / 'iter_1.pth').exists():
            if fail_at == 'checkpoint' or (work_dir / 'iter_2.pth').exists():
                raise OSError(f'injected: crash saving {dst}')
        return real_replace(src, dst)

    runner = _keep_one_runner(tiny_seg_cfg, work_dir)
    monkeypatch.setattr(os, 'replace', replace_failing_second)
    with pytest.raises(OSError, match='injected'):
        runner.train()
    monkeypatch.undo()
    pointer = (work_dir / 'last_checkpoint').read_text()
    assert pointer == str(work_dir / 'iter_1.pth')
    checkpoint = safe_torch_load(pointer)
    assert checkpoint['meta']['iter'] == 1
    assert 'optimizer' in checkpoint
    assert _temp_files(work_dir) == []
