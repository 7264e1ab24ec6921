from .checkpoint_hook import AtomicCheckpointHook
from .deploy_form_hook import DeployFormHook
from .reparam_hook import ReparamHook
from .reseed_hook import ReseedHook

__all__ = [
    'AtomicCheckpointHook', 'DeployFormHook', 'ReparamHook', 'ReseedHook'
]
