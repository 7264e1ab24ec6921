"""An mmseg child of mmengine's FUNCTIONS registry, which mmseg lacks.

mmseg has children of mmengine's other registries but none of FUNCTIONS,
so under the mmseg scope every lookup of a collate function (the Runner's
dataloaders, ``MMSegInferencer``) logs ``Failed to search registry with
scope "mmseg"`` and then uses mmengine's. This empty child finds the same
functions through its parent, without the warning.
"""
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import Registry

FUNCTIONS = MMENGINE_FUNCTIONS.children.get('mmseg') or Registry(
    'function', parent=MMENGINE_FUNCTIONS, scope='mmseg')
