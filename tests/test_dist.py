"""Two-process training on the CPU through tools/dist_train.sh (torchrun).

gloo instead of nccl (``env_cfg.dist_cfg.backend=gloo``), and the toy
config's BN: torch's SyncBatchNorm trains only on GPUs (on CPUs
:class:`~mmseg_repvgg.cpu_dist.CPUDistributedDataParallel` would turn it
into BN anyway).
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from mmseg_repvgg.cpu_dist import setup_cpu_distributed
from mmseg_repvgg.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TOY = str(REPO / 'configs' / 'pspnet_repvgg_toy_cityscapes.py')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_process_training_with_dist_train_sh(tmp_path, tiny_toy_options):
    work_dir = tmp_path / 'work'
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PORT=str(free_port()),
        OMP_NUM_THREADS='1',
        PYTHONWARNINGS='ignore')
    # 4 images over 2 processes x 2 per batch: 1 iteration per epoch.
    options = [o for o in tiny_toy_options if 'max_epochs' not in o]
    options += [
        'train_cfg.max_epochs=2', 'param_scheduler.0.end=2',
        'env_cfg.dist_cfg.backend=gloo'
    ]
    result = subprocess.run([
        'bash',
        str(REPO / 'tools' / 'dist_train.sh'), TOY, '2', '--work-dir',
        str(work_dir), '--cfg-options', *options
    ],
                            cwd=tmp_path,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log
    assert (work_dir / 'epoch_2.pth').is_file()
    assert (work_dir / 'deploy_final.pth').is_file()
    (train_log, ) = work_dir.glob('*/*.log')
    # 1 iteration per epoch: each process took 2 of the 4 images.
    assert 'Epoch(train) [2][1/1]' in train_log.read_text()


def test_cpu_distributed_needs_torchrun_and_gloo(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert not setup_cpu_distributed(cfg, 'none')
    with pytest.raises(ConfigError, match='torchrun'):
        setup_cpu_distributed(cfg, 'slurm')
    for name in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                 'MASTER_PORT'):
        monkeypatch.setenv(name, '0')
    with pytest.raises(ConfigError, match='backend=gloo'):
        setup_cpu_distributed(cfg, 'pytorch')
    monkeypatch.delenv('RANK')
    with pytest.raises(ConfigError, match='RANK is not set'):
        setup_cpu_distributed(cfg, 'pytorch')
