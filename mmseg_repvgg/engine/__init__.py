from .hooks import (AtomicCheckpointHook, DeployFormHook, ReparamHook,
                    ReseedHook)

__all__ = [
    'AtomicCheckpointHook', 'DeployFormHook', 'ReparamHook', 'ReseedHook'
]
