"""onnxruntime: :func:`onnxruntime_session` opens every session (forms and
the export's check). ``import onnxruntime`` is the runtime, not this file.
"""
from typing import Optional

import numpy as np

from ...errors import ConfigError
from ..machine import machine
from .base import RuntimeSession, Shape, batches_at


def onnxruntime_session(path: str,
                        device: str = 'cpu',
                        threads: Optional[int] = None):
    """An onnxruntime session of ``path``: all graph optimizations, the
    ``device``'s provider, ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("onnxruntime is not installed; pip install "
                          "'mmseg-repvgg[deploy]'") from None
    provider = ('CUDAExecutionProvider'
                if str(device).startswith('cuda') else 'CPUExecutionProvider')
    if provider not in ort.get_available_providers():
        raise ConfigError(f'onnxruntime has no {provider} here; use '
                          '--device cpu')
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.graph_optimization_level = level
    return ort.InferenceSession(path, options, providers=[provider])


class OnnxRuntimeSession(RuntimeSession):
    """onnxruntime; int8 by ``quantize_static`` (QDQ, weights per channel,
    activations per tensor; 7-bit weights without VNNI, against int16
    saturation). Args as :class:`~.base.RuntimeSession`'s."""

    name = 'onnxruntime'

    def _quantize(self, path: str, shape: Shape) -> str:
        from onnxruntime.quantization import (CalibrationDataReader,
                                              QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
        batches = iter(batches_at(self.calibration, shape))

        class Reader(CalibrationDataReader):

            def get_next(self):
                batch = next(batches, None)
                return None if batch is None else {'input': batch}

        prepared, quantized = path + '.pre.onnx', path + '.int8.onnx'
        quant_pre_process(path, prepared)
        quantize_static(
            prepared,
            quantized,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=not machine().vnni,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8)
        return quantized

    def _build(self, shape: Shape):
        path = self._onnx_path(shape)
        if self.int8:
            path = self._quantize(path, shape)
        self.files[shape] = path
        return onnxruntime_session(path, self.device, self.threads)

    def _run(self, session, array: np.ndarray) -> np.ndarray:
        return session.run(None, {'input': array})[0]
