"""mmseg-repvgg: RepVGG for MMSegmentation 1.x.

Importing this package (or ``custom_imports=dict(imports=['mmseg_repvgg'])``
in a config) registers its pieces and changes nothing of mmengine's:

* mmseg's ``MODELS``: the ``RepVGG`` backbone;
* mmseg's ``WEIGHT_INITIALIZERS``: ``RepVGGPretrained`` (any checkpoint
  layout, loaded strictly);
* mmseg's ``HOOKS``: ``ReparamHook``, ``ReseedHook``,
  ``AtomicCheckpointHook``, ``DeployFormHook`` (which loads the deploy wing
  only when a config builds it);
* mmseg's ``DATASETS``: ``CheckedCityscapesDataset``;
* mmseg's ``METRICS``: ``Numpy2CityscapesMetric`` (mmseg's CityscapesMetric
  on numpy 2);
* mmengine's checkpoint loader schemes: ``safe://`` (weights-only loading
  of mmengine's own checkpoints, :mod:`mmseg_repvgg.checkpoint.safe_load`);
* mmengine's file backends: ``local_atomic`` (:mod:`mmseg_repvgg.atomic_io`);
* mmengine's ``FUNCTIONS``: the mmseg child mmseg 1.2 lacks
  (:mod:`mmseg_repvgg.registry`).

It loads no deploy, kernel or runtime code: :mod:`mmseg_repvgg.deploy`,
:mod:`mmseg_repvgg.apis` and :mod:`mmseg_repvgg.benchmark` load when a
deploy tool, the ``DeployFormHook`` or the deploy API is used
(``tests/test_package.py`` checks it in a fresh process).
"""
from . import atomic_io  # noqa: F401  (registers the local_atomic backend)
from . import checkpoint  # noqa: F401  (RepVGGPretrained, safe://)
from . import datasets  # noqa: F401  (registers the checked dataset)
from . import engine  # noqa: F401  (registers the hooks)
from . import evaluation  # noqa: F401  (registers the metric)
from . import models  # noqa: F401  (registers RepVGG)
from . import registry  # noqa: F401  (mmseg's FUNCTIONS child)

__version__ = '0.1.0'
