"""Checkpoints: safe reading, any layout, downloads, the one fit rule."""
from .fit import (DEPLOY_META_KEY, build_segmentor, check_checkpoint_fits,
                  check_state_dict_matches, checkpoint_state_dict,
                  fit_to_checkpoint, is_deploy_checkpoint, load_segmentor)
from .layouts import (LAYOUTS, detect_layout, export_layout,
                      normalize_state_dict)
from .loading import (RepVGGPretrained, check_fits, convert_file,
                      convert_to_ours, key_differences, load_pretrained,
                      read_checkpoint, save_converted)
from .safe_load import SAFE_SCHEME, safe_torch_load

__all__ = [
    'DEPLOY_META_KEY', 'LAYOUTS', 'RepVGGPretrained', 'SAFE_SCHEME',
    'build_segmentor', 'check_checkpoint_fits', 'check_fits',
    'check_state_dict_matches', 'checkpoint_state_dict', 'convert_file',
    'convert_to_ours', 'detect_layout', 'export_layout', 'fit_to_checkpoint',
    'is_deploy_checkpoint', 'key_differences', 'load_pretrained',
    'load_segmentor', 'normalize_state_dict', 'read_checkpoint',
    'save_converted', 'safe_torch_load'
]
