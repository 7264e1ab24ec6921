"""Pretrained RepVGG weights of every layout in circulation.

:func:`load_pretrained` is what the ``RepVGGPretrained`` initializer
(registered in mmseg's ``WEIGHT_INITIALIZERS``) calls for the backbone's
``init_cfg=dict(type='RepVGGPretrained', checkpoint=PATH)``; it reads official,
mmpretrain, timm and our own checkpoints, train-time or fused, into a
train-time or fused backbone. ``tools/convert_checkpoint.py`` saves any of
them in our layout.
"""
from .layouts import (LAYOUTS, detect_layout, export_layout,
                      normalize_state_dict)
from .loading import (check_fits, convert_file, convert_to_ours,
                      key_differences, load_pretrained, read_checkpoint,
                      save_converted)
from .pretrained_init import RepVGGPretrained

__all__ = [
    'LAYOUTS', 'RepVGGPretrained', 'check_fits', 'convert_file',
    'convert_to_ours', 'detect_layout', 'export_layout', 'key_differences',
    'load_pretrained', 'normalize_state_dict', 'read_checkpoint',
    'save_converted'
]
