from .reparam_hook import ReparamHook
from .reseed_hook import ReseedHook

__all__ = ['ReparamHook', 'ReseedHook']
