from .deploy_test_loop import DeployFormTestLoop
from .hooks import (AtomicCheckpointHook, CheckpointFitHook,
                    FuseBeforeTestHook, FusedValHook, ReparamHook, ReseedHook,
                    SaveDeployHook)

__all__ = [
    'DeployFormTestLoop', 'AtomicCheckpointHook', 'CheckpointFitHook',
    'FuseBeforeTestHook', 'FusedValHook', 'ReparamHook', 'ReseedHook',
    'SaveDeployHook'
]
