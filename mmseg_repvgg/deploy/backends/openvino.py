"""OpenVINO's CPU plugin, int8 through NNCF (both imported inside the
methods; ``import openvino`` is the runtime, not this module)."""
import contextlib
import os.path as osp
import sys

import numpy as np

from ...errors import ConfigError
from ..machine import machine
from .base import RuntimeSession, Shape, batches_at


class OpenVINOSession(RuntimeSession):
    """OpenVINO's CPU plugin; int8 by NNCF's ``quantize`` (its overflow fix
    on every layer without VNNI). Args as :class:`~.base.RuntimeSession`'s.
    """

    name = 'openvino'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.device != 'cpu':
            raise ConfigError('the OpenVINO forms run on the CPU; use '
                              '--device cpu')
        import openvino as ov
        self.core = ov.Core()

    def _quantize(self, model, shape: Shape):
        import nncf
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters, OverflowFix)
        batches = batches_at(self.calibration, shape)
        overflow = (
            OverflowFix.FIRST_LAYER if machine().vnni else OverflowFix.ENABLE)
        # NNCF's recursive graph walk goes deeper than the default limit.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 100000))
        try:
            # NNCF draws progress bars on stdout, which is the tools' report.
            with contextlib.redirect_stdout(sys.stderr):
                return nncf.quantize(
                    model,
                    nncf.Dataset(batches),
                    subset_size=len(batches),
                    advanced_parameters=AdvancedQuantizationParameters(
                        overflow_fix=overflow))
        finally:
            sys.setrecursionlimit(limit)

    def _build(self, shape: Shape):
        import openvino as ov
        path = self._onnx_path(shape)
        model = self.core.read_model(path)
        if self.int8:
            model = self._quantize(model, shape)
            path = osp.splitext(path)[0] + '.int8.xml'
            ov.save_model(model, path)
        self.files[shape] = path
        config = {
            'PERFORMANCE_HINT': 'LATENCY',
            'INFERENCE_NUM_THREADS': self.threads,
            # Else OpenVINO runs fp32 in bf16 where bf16 is native.
            'INFERENCE_PRECISION_HINT': 'f32',
        }
        return self.core.compile_model(model, 'CPU', config)

    def _run(self, compiled, array: np.ndarray) -> np.ndarray:
        return compiled(array)[0]
