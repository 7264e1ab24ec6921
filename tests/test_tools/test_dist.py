"""Two-process training on the CPU through tools/dist_train.sh (torchrun).

gloo instead of nccl (``env_cfg.dist_cfg.backend=gloo``), and the toy
config's BN: torch's SyncBatchNorm trains only on GPUs (on CPUs
:class:`~mmseg_repvgg.cli.cpu_dist.CPUDistributedDataParallel` would turn it
into BN anyway).
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmseg_repvgg.cli.cpu_dist import setup_cpu_distributed
from mmseg_repvgg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
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


EQUIVALENCE_CONFIG = """
_base_ = [{toy!r}]
# Nothing that depends on how the batch is split across processes: BN
# frozen (its running statistics), no norm in the heads, no dropout, and
# no random augmentation (each process would draw its own).
model = dict(
    backbone=dict(norm_eval=True),
    decode_head=dict(norm_cfg=None, dropout_ratio=0.0),
    auxiliary_head=dict(norm_cfg=None, dropout_ratio=0.0))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(64, 32), keep_ratio=False),
    dict(type='PackSegInputs')
]))
"""


def _weights(work_dir, epoch):
    from mmseg_repvgg.checkpoint.safe_load import safe_torch_load
    path = work_dir / f'epoch_{epoch}.pth'
    return safe_torch_load(str(path))['state_dict']


#: (processes, images per process): the same global batch of 4.
RUNS = ((1, 4), (2, 2))


def test_two_processes_train_to_the_weights_of_one(tmp_path, tiny_toy_options):
    """The same global batch of 4 on one process, or 2 + 2 on two: DDP's
    averaged gradients and the sampler's rank split give the same steps."""
    config = tmp_path / 'equivalence.py'
    config.write_text(EQUIVALENCE_CONFIG.format(toy=TOY))
    options = [
        o for o in tiny_toy_options
        if not o.startswith(('train_cfg.max_epochs',
                             'train_dataloader.batch_size',
                             'train_dataloader.dataset.pipeline'))
    ]
    options += [
        # mmengine's poly decay reaches 0 at its last step: 3 epochs (one
        # step each) make the second step move the weights too.
        'train_cfg.max_epochs=3',
        'param_scheduler.0.end=3',
        'env_cfg.dist_cfg.backend=gloo',
        'default_hooks.checkpoint.max_keep_ckpts=3'
    ]
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        PYTHONWARNINGS='ignore')
    runs = {}
    for procs, batch in RUNS:
        work_dir = tmp_path / f'work_{procs}'
        if procs == 1:
            command = [sys.executable, str(REPO / 'tools' / 'train.py')]
        else:
            env['PORT'] = str(free_port())
            command = ['bash', str(REPO / 'tools' / 'dist_train.sh')]
        command += [str(config)] + (['2'] if procs == 2 else [])
        result = subprocess.run(
            command + [
                '--work-dir',
                str(work_dir), '--cfg-options', *options,
                f'train_dataloader.batch_size={batch}'
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        runs[procs] = work_dir
    one, two = _weights(runs[1], 2), _weights(runs[2], 2)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], rtol=1e-4, atol=1e-6), key
    # The second step moved the weights: the equality is not trivial.
    first = _weights(runs[1], 1)
    moved = [k for k in one if not torch.equal(one[k], first[k])]
    assert len(moved) > 10
