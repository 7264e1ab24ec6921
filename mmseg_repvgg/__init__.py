"""mmseg-repvgg: RepVGG for MMSegmentation 1.x.

Importing it (or naming it in a config's ``custom_imports``) registers the
backbone, its initializer, hooks, dataset, metrics and visualizer in mmseg's
registries, and the ``safe://`` loader and ``local_atomic`` backend in
mmengine's, and mmseg's child of mmengine's ``FUNCTIONS`` that mmseg
lacks (:mod:`.registry`); it loads no deploy, kernel or runtime code.
"""
from . import atomic_io  # noqa: F401  (registers the local_atomic backend)
from . import checkpoint  # noqa: F401  (RepVGGPretrained, safe://)
from . import datasets  # noqa: F401  (registers the checked dataset)
from . import engine  # noqa: F401  (registers the hooks)
from . import evaluation  # noqa: F401  (registers the metrics)
from . import models  # noqa: F401  (registers RepVGG)
from . import registry  # noqa: F401  (mmseg's FUNCTIONS child)
from . import visualization  # noqa: F401  (the visualizer and its hook)

__version__ = '0.1.0'
