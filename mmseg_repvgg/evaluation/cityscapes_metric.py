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
    """Give cityscapesscripts' pixel-level evaluation ``np.in1d`` for a while.

    The evaluation calls ``np.in1d``, which numpy removed; within the
    block its module (only) sees a numpy whose ``in1d`` is ``np.isin``, and
    gets numpy back afterwards. A no-op where numpy still has ``in1d``.
    """
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
    """mmseg's ``CityscapesMetric`` (the official evaluation), any numpy.

    Every argument is ``CityscapesMetric``'s; name it in a config instead::

        test_evaluator = dict(type='Numpy2CityscapesMetric', output_dir=DIR)
    """

    def compute_metrics(self, results: List) -> Dict[str, float]:
        """``CityscapesMetric.compute_metrics`` with ``np.in1d`` available.
        """
        with numpy1_for_cityscapes_eval():
            return super().compute_metrics(results)
