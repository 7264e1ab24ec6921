"""Checkpoints are never left half-written (mmseg_repvgg.atomic_io).

Each test injects a fault in the middle of a save (a full disk, a failing
rename, a kill -9, a crash between the checkpoint and its pointer) and
checks that the previous checkpoint is still there and loads. Saves go
through the ``local_atomic`` file backend and ``AtomicCheckpointHook``,
which the configs name; mmengine's own backend and hook, left as they are,
lose the checkpoint in the same faults (the ``mmengine`` cases below):
mmengine 0.10.7 truncates the old file before writing and deletes the
oldest kept checkpoint before saving.
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

from mmseg_repvgg.atomic_io import ATOMIC_BACKEND_ARGS
from mmseg_repvgg.checkpoint.safe_load import safe_torch_load


def _save(checkpoint: dict, path, atomic: bool = True) -> None:
    backend_args = dict(ATOMIC_BACKEND_ARGS) if atomic else None
    save_checkpoint(checkpoint, str(path), backend_args=backend_args)


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


@pytest.mark.parametrize('atomic', [True, False], ids=['ours', 'mmengine'])
def test_disk_full_mid_write_keeps_previous_checkpoint(tmp_path,
                                                       file_size_limit,
                                                       atomic):
    path = tmp_path / 'iter_2.pth'
    _save(_checkpoint(1), path)
    size = path.stat().st_size
    file_size_limit(size // 2)  # the new file fails half-way
    with pytest.raises(OSError, match='too large'):
        _save(_checkpoint(2), path, atomic)
    file_size_limit(resource.RLIM_INFINITY)
    if not atomic:  # mmengine's own backend truncated the old checkpoint
        assert path.stat().st_size < size
        return
    assert path.stat().st_size == size
    _assert_holds(path, 1)
    assert _temp_files(tmp_path) == []


def test_failed_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'epoch_4.pth'
    _save(_checkpoint(1), path)

    def failing_replace(src, dst):
        raise OSError('injected: rename failed')

    monkeypatch.setattr(os, 'replace', failing_replace)
    with pytest.raises(OSError, match='injected'):
        _save(_checkpoint(2), path)
    monkeypatch.undo()
    _assert_holds(path, 1)
    assert _temp_files(tmp_path) == []


def test_saved_checkpoint_gets_the_mode_open_would_give(tmp_path):
    reference = tmp_path / 'plain'
    reference.write_bytes(b'')
    path = tmp_path / 'iter_1.pth'
    _save(_checkpoint(1), path)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(
        reference.stat().st_mode)
    _assert_holds(path, 1)


_SLOW_SAVE = textwrap.dedent("""
    import os, sys, time
    import torch
    from mmengine.runner import save_checkpoint
    from mmseg_repvgg.atomic_io import ATOMIC_BACKEND_ARGS
    path, flag = sys.argv[1:3]
    state = dict(weight=torch.full((16384, ), 2.0))
    real_fsync = os.fsync
    def fsync_then_hang(fd):
        # Every byte of the new checkpoint is written, nothing renamed.
        real_fsync(fd)
        open(flag, 'w').close()
        time.sleep(60)
    os.fsync = fsync_then_hang
    save_checkpoint(dict(meta=dict(iter=2), state_dict=state), path,
                    backend_args=ATOMIC_BACKEND_ARGS)
""")


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    path, flag = tmp_path / 'iter_2.pth', tmp_path / 'mid_save'
    _save(_checkpoint(1), path)
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


def _keep_one_runner(cfg, work_dir, hook: str) -> Runner:
    """The tiny model, a checkpoint every iteration, only the last kept."""
    cfg.work_dir = str(work_dir)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.default_hooks.checkpoint = dict(
        type=hook, by_epoch=False, interval=1, max_keep_ckpts=1)
    cfg.custom_hooks = []
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg.pop(key)
    return Runner.from_cfg(cfg)


@pytest.mark.parametrize('hook', ['AtomicCheckpointHook', 'CheckpointHook'])
@pytest.mark.parametrize('fail_at', ['checkpoint', 'last_checkpoint'])
def test_max_keep_ckpts_keeps_previous_until_new_is_safe(
        tmp_path, tiny_seg_cfg, monkeypatch, fail_at, hook):
    """Crash while saving iter_2.pth, or between it and its pointer."""
    work_dir = tmp_path / 'keep_one'
    real_replace = os.replace
    real_open = open

    def crash(dst):
        name = os.path.basename(dst)
        second_save = (work_dir / 'iter_2.pth').exists()
        if name == fail_at == 'last_checkpoint' and second_save or (
                name == 'iter_2.pth' and fail_at == 'checkpoint'):
            raise OSError(f'injected: crash saving {dst}')

    def replace_failing_second(src, dst):
        crash(dst)
        return real_replace(src, dst)

    def open_failing_second(file, mode='r', *args, **kwargs):
        # mmengine's own hook writes in place, through open().
        if 'w' in mode and isinstance(file, (str, os.PathLike)):
            crash(os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    runner = _keep_one_runner(tiny_seg_cfg, work_dir, hook)
    monkeypatch.setattr(os, 'replace', replace_failing_second)
    monkeypatch.setattr('builtins.open', open_failing_second)
    with pytest.raises(OSError, match='injected'):
        runner.train()
    monkeypatch.undo()
    pointer = (work_dir / 'last_checkpoint').read_text()
    if hook == 'CheckpointHook':  # iter_1.pth was deleted before the save
        assert pointer == str(work_dir / 'iter_1.pth')
        assert not (work_dir / 'iter_1.pth').exists()
        return
    assert pointer == str(work_dir / 'iter_1.pth')
    checkpoint = safe_torch_load(pointer)
    assert checkpoint['meta']['iter'] == 1
    assert 'optimizer' in checkpoint
    assert _temp_files(work_dir) == []
