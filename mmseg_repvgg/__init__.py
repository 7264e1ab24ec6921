"""mmseg-repvgg: RepVGG for MMSegmentation 1.x. Importing it registers its
modules in mmseg's and mmengine's registries, and loads no deploy code."""
from . import atomic_io  # noqa: F401  (the local_atomic backend)
from . import checkpoint  # noqa: F401  (RepVGGPretrained, safe://)
from . import datasets  # noqa: F401
from . import engine  # noqa: F401  (hooks, the deploy test loop)
from . import evaluation  # noqa: F401
from . import models  # noqa: F401
from . import registry  # noqa: F401  (mmseg's FUNCTIONS child)
from . import visualization  # noqa: F401

__version__ = '0.1.0'
