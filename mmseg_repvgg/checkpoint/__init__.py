"""Pretrained RepVGG weights of every layout in circulation.

:func:`load_pretrained` is what the backbone's ``init_weights`` calls for
``init_cfg=dict(type='Pretrained', checkpoint=PATH)``; it reads official,
mmpretrain, timm and our own checkpoints, train-time or fused, into a
train-time or fused backbone. ``tools/convert_checkpoint.py`` saves any of
them in our layout.
"""
from .layouts import (LAYOUTS, detect_layout, export_layout,
                      normalize_state_dict)
from .loading import (check_fits, convert_file, convert_to_ours,
                      load_pretrained, read_checkpoint, save_converted)

__all__ = [
    'LAYOUTS', 'check_fits', 'convert_file', 'convert_to_ours',
    'detect_layout', 'export_layout', 'load_pretrained',
    'normalize_state_dict', 'read_checkpoint', 'save_converted'
]
