"""An mmseg child of mmengine's FUNCTIONS registry: without it every collate
lookup under the mmseg scope logs ``Failed to search registry``."""
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import Registry

FUNCTIONS = MMENGINE_FUNCTIONS.children.get('mmseg') or Registry(
    'function', parent=MMENGINE_FUNCTIONS, scope='mmseg')
