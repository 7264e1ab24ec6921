"""Distributed training and testing on CPUs (gloo): mmengine assumes CUDA
when it starts a process group and wraps the model in DDP."""
import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

from ..errors import ConfigError

TORCHRUN_ENV = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                'MASTER_PORT')


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for a model on the CPU: ``device_ids`` (the
    Runner's local rank) ignored, SyncBN turned back into BN (torch's trains
    on GPUs only); the other arguments are ``MMDistributedDataParallel``'s.
    """

    def __init__(self, module: nn.Module, device_ids=None, **kwargs):
        if any(isinstance(m, nn.SyncBatchNorm) for m in module.modules()):
            print_log(
                'CPU distributed run: SyncBN needs GPUs, so it is replaced '
                'by BN (batch statistics are per process, not synced)',
                logger='current')
            module = revert_sync_batchnorm(module)
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare a distributed run on CPUs (its ``model_wrapper_cfg`` set if
    none) for ``launcher`` 'none', 'pytorch', 'slurm' or 'mpi'; do nothing on
    GPUs. Returns whether the process group was started here."""
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise ConfigError(
            f'--launcher {launcher} needs GPUs; on CPUs start the processes '
            'with torchrun: tools/dist_train.sh CONFIG NPROC --cfg-options '
            'env_cfg.dist_cfg.backend=gloo')
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise ConfigError(
            f'--launcher pytorch, but {", ".join(missing)} is not set: start '
            'the processes with torchrun (tools/dist_train.sh, '
            'tools/dist_test.sh), or drop --launcher for one process')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    if dist_cfg.setdefault('backend', 'nccl') == 'nccl':
        raise ConfigError(
            'the config asks for the nccl backend, which needs GPUs, and '
            'torch sees none; on CPUs use gloo: --cfg-options '
            'env_cfg.dist_cfg.backend=gloo')
    if dist_cfg.get('timeout') is not None:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(**dist_cfg)
    if cfg.get('model_wrapper_cfg') is None:
        # The arguments mmengine gives its own DDP when it picks the wrapper.
        cfg.model_wrapper_cfg = dict(
            type='CPUDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True
