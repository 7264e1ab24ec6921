"""Checkpoints: reading them safely, their layouts, and whether they fit.

* :mod:`.safe_load`: ``weights_only`` loading with an explicit allow-list,
  and the ``safe://`` loader scheme registered in mmengine.
* :mod:`.layouts`, :mod:`.loading`: pretrained RepVGG weights of every
  layout in circulation (official, mmpretrain, timm, ours; train-time or
  fused), read into a train-time or fused backbone; ``RepVGGPretrained``
  (:mod:`.pretrained_init`) in mmseg's ``WEIGHT_INITIALIZERS``;
  ``tools/convert_checkpoint.py`` saves any of them in our layout.
* :mod:`.download`: a URL or a name (``mmpretrain://repvgg-B2``,
  ``timm://repvgg_b2.rvgg_in1k``) in place of a path, fetched once into
  torch's hub cache and read by the same weights-only loader.
* :mod:`.fit`: the one rule for "does this checkpoint fit this segmentor",
  used by the tools, the ReparamHook and :func:`load_segmentor`.
"""
from .fit import (DEPLOY_META_KEY, build_segmentor, check_checkpoint_fits,
                  check_state_dict_matches, checkpoint_state_dict,
                  fit_to_checkpoint, is_deploy_checkpoint, load_segmentor)
from .layouts import (LAYOUTS, detect_layout, export_layout,
                      normalize_state_dict)
from .loading import (check_fits, convert_file, convert_to_ours,
                      key_differences, load_pretrained, read_checkpoint,
                      save_converted)
from .pretrained_init import RepVGGPretrained
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
