"""The runtimes a deploy form can run in, one module per runtime.

Each module drives one runtime's own session (and its own post-training
int8 tool) on the ONNX export of :mod:`..onnx_export`; none writes a
quantizer or an inference engine. The runtimes themselves (onnxruntime,
OpenVINO, NNCF) are imported inside the functions that use them, so
importing this package loads none of them.

* :mod:`.base`: :class:`RuntimeSession`, export per input shape, then run.
* :mod:`.onnxruntime`: :class:`OnnxRuntimeSession` and
  :func:`onnxruntime_session` (also what ``check_onnx`` runs an export in).
* :mod:`.openvino`: :class:`OpenVINOSession` (int8 through NNCF).

The modules are named after their runtimes, as in mmdeploy; imports are
absolute, so ``import onnxruntime`` inside :mod:`.onnxruntime` is the
runtime, never this module.
"""
from typing import Dict, Type

from .base import RuntimeSession
from .onnxruntime import OnnxRuntimeSession, onnxruntime_session
from .openvino import OpenVINOSession

#: A form's ``runtime`` -> the session class that runs it: the one table
#: :func:`~mmseg_repvgg.deploy.deployed.deploy_model` looks runtimes up in.
RUNTIMES: Dict[str, Type[RuntimeSession]] = {
    OnnxRuntimeSession.name: OnnxRuntimeSession,
    OpenVINOSession.name: OpenVINOSession,
}

__all__ = [
    'RUNTIMES', 'RuntimeSession', 'OnnxRuntimeSession', 'OpenVINOSession',
    'onnxruntime_session'
]
