from .checkpoint_fit_hook import CheckpointFitHook
from .checkpoint_hook import AtomicCheckpointHook
from .reparam_hook import (FuseBeforeTestHook, FusedValHook, ReparamHook,
                           SaveDeployHook)
from .reseed_hook import ReseedHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointFitHook', 'FuseBeforeTestHook',
    'FusedValHook', 'ReparamHook', 'ReseedHook', 'SaveDeployHook'
]
