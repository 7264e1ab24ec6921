"""mmseg-repvgg: RepVGG for MMSegmentation 1.x.

Importing this package (or ``custom_imports=dict(imports=['mmseg_repvgg'])``
in a config) applies the compatibility patches and registers the backbone,
the hook and the datasets into mmseg's registries.
"""
from .compat import apply_patches

apply_patches()

from . import datasets  # noqa: E402,F401  (registers the checked dataset)
from . import engine  # noqa: E402,F401  (registers ReparamHook)
from . import models  # noqa: E402,F401  (registers RepVGG)

__version__ = '0.1.0'
