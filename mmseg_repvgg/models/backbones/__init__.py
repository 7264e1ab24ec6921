from .repvgg import RepVGG, RepVGGBlock

__all__ = ['RepVGG', 'RepVGGBlock']
