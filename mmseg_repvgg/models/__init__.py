from .backbones import RepVGG, RepVGGBlock
from .reparam import fusable_modules, reparameterize_model

__all__ = ['RepVGG', 'RepVGGBlock', 'fusable_modules', 'reparameterize_model']
