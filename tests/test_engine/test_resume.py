"""Training survives kill -9: --resume repeats the uninterrupted run exactly.

The toy config, shrunk to a tiny model on 32x64 toy images (6 epochs of 2
iterations, a checkpoint every 2 epochs, only the last one kept), trains
through ``tools/train.py`` in a subprocess three times:

1. uninterrupted;
2. killed with SIGKILL one optimizer step into epoch 3, i.e. after
   ``epoch_2.pth`` was written and mid-way to ``epoch_4.pth``. A test-only
   hook stops there (it writes a flag file and sleeps) so that the kill
   lands at the same point on a fast or a slow machine; polling for
   ``epoch_2.pth`` alone could miss a 50 ms window;
3. ``--resume`` in the killed run's work dir.

The resumed run continues from ``epoch_2.pth`` at its iteration count and
learning rate, and ends with weights, optimizer state (momentum buffers)
and scheduler state bit-for-bit equal to the uninterrupted run's. That
needs ``ReseedHook`` (dropout and the random augmentations otherwise draw
from a generator restarted at the resume; see docs/reliability.md), which
the test adds unless the config already has it.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmseg_repvgg.checkpoint.safe_load import SAFE_SCHEME, safe_torch_load

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / 'configs' / 'pspnet_repvgg_toy_cityscapes.py'
EPOCHS, ITERS_PER_EPOCH = 6, 2  # 4 toy images, batches of 2

KILL_HOOK = textwrap.dedent("""
    import os
    import time

    from mmengine.hooks import Hook
    from mmseg.registry import HOOKS


    @HOOKS.register_module()
    class StopForKillHook(Hook):
        # With $STOP_FLAG set: after the first step of epoch 3, write the
        # flag and wait to be killed.
        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            flag = os.environ.get('STOP_FLAG')
            if flag and runner.epoch == 2 and batch_idx == 0:
                open(flag, 'w').close()
                time.sleep(300)
""")


@pytest.fixture(scope='module')
def resume_config(tmp_path_factory, toy_cityscapes_tiny):
    """The toy config, tiny, with ReseedHook and the test's kill hook."""
    root = tmp_path_factory.mktemp('resume')
    (root / 'stop_for_kill_hook.py').write_text(KILL_HOOK)
    cfg = Config.fromfile(str(TOY))
    tiny = dict(num_blocks=[1, 1, 1, 1], width_factor=[0.25] * 4)
    cfg.model.backbone.arch = tiny
    cfg.model.data_preprocessor.size = (32, 64)
    cfg.model.decode_head.update(in_channels=128, channels=8)
    cfg.model.auxiliary_head.update(in_channels=64, channels=8)
    train_pipeline = cfg.train_dataloader.dataset.pipeline
    train_pipeline[2].scale = (64, 32)  # RandomResize
    train_pipeline[3].crop_size = (32, 64)  # RandomCrop
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.data_root = str(toy_cityscapes_tiny)
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.update(max_epochs=EPOCHS, val_interval=EPOCHS + 1)
    cfg.param_scheduler[0].end = EPOCHS
    cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 1
    cfg.custom_imports.imports.append('stop_for_kill_hook')
    hooks = [hook['type'] for hook in cfg.custom_hooks]
    if 'ReseedHook' not in hooks:
        cfg.custom_hooks.append(dict(type='ReseedHook'))
    cfg.custom_hooks.append(dict(type='StopForKillHook'))
    path = root / 'toy_tiny_resume.py'
    cfg.dump(str(path))
    return path


def _train(config, work_dir, *args, stop_flag=None):
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONWARNINGS='ignore',
        PYTHONPATH=os.pathsep.join(
            [str(config.parent),
             os.environ.get('PYTHONPATH', '')]))
    if stop_flag is not None:
        env['STOP_FLAG'] = str(stop_flag)
    command = [
        sys.executable,
        str(REPO / 'tools' / 'train.py'),
        str(config), '--work-dir',
        str(work_dir), *args
    ]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


def _finish(proc) -> str:
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-3000:]
    return log


def _kill_at_flag(proc, flag: Path) -> None:
    deadline = time.monotonic() + 300
    try:
        while not flag.exists():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, 'never reached epoch 3'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _lr_at(log: str, epoch: int, step: int) -> str:
    match = re.search(
        rf'Epoch\(train\)\s+\[{epoch}\]\[{step}/{ITERS_PER_EPOCH}\]'
        r'\s+lr: (\S+)', log)
    assert match, f'no log line for epoch {epoch} step {step}'
    return match.group(1)


def _assert_same(a, b, what: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for key in a:
            _assert_same(a[key], b[key], f'{what}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f'{what}[{i}]')
    else:
        assert a == b, what


def test_kill_9_then_resume_equals_uninterrupted_run(resume_config, tmp_path):
    full_dir, killed_dir = tmp_path / 'full', tmp_path / 'killed'
    flag = tmp_path / 'stopped_in_epoch_3'
    # The uninterrupted run and the run to kill, side by side.
    full = _train(resume_config, full_dir)
    killed = _train(resume_config, killed_dir, stop_flag=flag)
    _kill_at_flag(killed, flag)
    full_log = _finish(full)

    # Killed mid-way to epoch_4.pth: the last checkpoint is epoch 2's.
    assert not (killed_dir / 'epoch_4.pth').exists()
    last = (killed_dir / 'last_checkpoint').read_text()
    assert Path(last) == killed_dir / 'epoch_2.pth'
    saved = safe_torch_load(last)
    assert (saved['meta']['epoch'], saved['meta']['iter']) == (2, 4)

    resumed_log = _finish(_train(resume_config, killed_dir, '--resume'))
    # tools/train.py resolves --resume to the latest checkpoint itself and
    # reads it through the safe:// scheme (mmengine's loader refuses it).
    assert f'Load checkpoint from {SAFE_SCHEME}{last}' in resumed_log
    assert 'resumed epoch: 2, iter: 4' in resumed_log
    assert 'Epoch(train) [1]' not in resumed_log  # nothing trained twice
    # The learning rate picks up where the schedule was.
    for epoch, step in ((3, 1), (6, 2)):
        expected_lr = _lr_at(full_log, epoch, step)
        assert _lr_at(resumed_log, epoch, step) == expected_lr

    expected = safe_torch_load(str(full_dir / 'epoch_6.pth'))
    got = safe_torch_load(str(killed_dir / 'epoch_6.pth'))
    assert got['meta']['epoch'] == EPOCHS
    assert got['meta']['iter'] == EPOCHS * ITERS_PER_EPOCH
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        _assert_same(expected[key], got[key], key)
    assert expected['optimizer']['state'], 'no momentum buffers compared'
    # max_keep_ckpts=1: only the last checkpoint is left, whole.
    kept = sorted(p.name for p in killed_dir.glob('epoch_*.pth'))
    assert kept == ['epoch_6.pth']
