"""An mmseg child of mmengine's FUNCTIONS registry, which mmseg lacks:
without it every collate-function lookup under the mmseg scope logs
``Failed to search registry with scope "mmseg"`` before using mmengine's.
"""
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import Registry

FUNCTIONS = MMENGINE_FUNCTIONS.children.get('mmseg') or Registry(
    'function', parent=MMENGINE_FUNCTIONS, scope='mmseg')
