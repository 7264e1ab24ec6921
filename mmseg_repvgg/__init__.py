"""mmseg-repvgg: RepVGG for MMSegmentation 1.x.

Importing this package (or ``custom_imports=dict(imports=['mmseg_repvgg'])``
in a config) registers its pieces and changes nothing of mmengine's:

* mmseg's ``MODELS``: the ``RepVGG`` backbone;
* mmseg's ``WEIGHT_INITIALIZERS``: ``RepVGGPretrained`` (any checkpoint
  layout, loaded strictly);
* mmseg's ``HOOKS``: ``ReparamHook``, ``ReseedHook``,
  ``AtomicCheckpointHook``;
* mmseg's ``DATASETS``: ``CheckedCityscapesDataset``;
* mmseg's ``METRICS``: ``Numpy2CityscapesMetric`` (mmseg's CityscapesMetric
  on numpy 2);
* mmengine's checkpoint loader schemes: ``safe://`` (weights-only loading
  of mmengine's own checkpoints, :mod:`mmseg_repvgg.compat`);
* mmengine's file backends: ``local_atomic`` (:mod:`mmseg_repvgg.atomic_io`).
"""
from . import atomic_io  # noqa: F401  (registers the local_atomic backend)
from . import checkpoint  # noqa: F401  (registers RepVGGPretrained)
from . import compat  # noqa: F401  (registers the safe:// loader scheme)
from . import datasets  # noqa: F401  (registers the checked dataset)
from . import engine  # noqa: F401  (registers the hooks)
from . import evaluation  # noqa: F401  (registers the metric)
from . import models  # noqa: F401  (registers RepVGG)

__version__ = '0.1.0'
