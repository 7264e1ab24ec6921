"""mmseg's CityscapesMetric on a numpy without ``in1d``, patching nothing."""
import contextlib
import types
from typing import Dict, Iterator, List

import numpy as np
from mmseg.evaluation import CityscapesMetric
from mmseg.registry import METRICS


class _NumpyWithIn1d(types.ModuleType):
    """numpy for one module, with ``in1d`` as ``isin`` (as it once was)."""

    in1d = staticmethod(np.isin)

    def __getattr__(self, name):
        return getattr(np, name)


@contextlib.contextmanager
def numpy1_for_cityscapes_eval() -> Iterator[None]:
    """Within the block, cityscapesscripts' pixel-level evaluation (only)
    sees a numpy whose ``in1d`` (removed from numpy) is ``np.isin``."""
    if hasattr(np, 'in1d'):
        yield
        return
    from cityscapesscripts.evaluation import \
        evalPixelLevelSemanticLabeling as cs_eval
    numpy = cs_eval.np
    cs_eval.np = _NumpyWithIn1d('numpy')
    try:
        yield
    finally:
        cs_eval.np = numpy


@METRICS.register_module()
class Numpy2CityscapesMetric(CityscapesMetric):
    """mmseg's ``CityscapesMetric`` (same arguments) on any numpy."""

    def compute_metrics(self, results: List) -> Dict[str, float]:
        with numpy1_for_cityscapes_eval():
            return super().compute_metrics(results)
