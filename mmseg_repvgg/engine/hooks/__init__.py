from .checkpoint_fit_hook import CheckpointFitHook
from .checkpoint_hook import AtomicCheckpointHook
from .fuse_before_test_hook import FuseBeforeTestHook
from .fused_val_hook import FusedValHook
from .reparam_hook import ReparamHook
from .reseed_hook import ReseedHook
from .save_deploy_hook import SaveDeployHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointFitHook', 'FuseBeforeTestHook',
    'FusedValHook', 'ReparamHook', 'ReseedHook', 'SaveDeployHook'
]
