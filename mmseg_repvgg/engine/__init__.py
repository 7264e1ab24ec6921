from .hooks import (AtomicCheckpointHook, CheckpointFitHook, DeployFormHook,
                    FuseBeforeTestHook, FusedValHook, ReparamHook, ReseedHook,
                    SaveDeployHook)

__all__ = [
    'AtomicCheckpointHook', 'CheckpointFitHook', 'DeployFormHook',
    'FuseBeforeTestHook', 'FusedValHook', 'ReparamHook', 'ReseedHook',
    'SaveDeployHook'
]
