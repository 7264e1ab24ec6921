from .backbones import RepVGG, RepVGGBlock
from .fuse import (TRAIN_ONLY_HEADS, FusionMismatchError, FusionReport,
                   check_fused_equal, fuse_segmentor, segmentor_logits)
from .reparam import fusable_modules, reparameterize_model

__all__ = [
    'FusionMismatchError', 'FusionReport', 'RepVGG', 'RepVGGBlock',
    'TRAIN_ONLY_HEADS', 'check_fused_equal', 'fusable_modules',
    'fuse_segmentor', 'reparameterize_model', 'segmentor_logits'
]
