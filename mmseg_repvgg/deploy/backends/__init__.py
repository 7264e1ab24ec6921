"""The runtimes a form can run in, one module each (as in mmdeploy), which
imports its runtime only where used; the export function is passed in."""
from typing import Dict, Type

from .base import RuntimeSession
from .onnxruntime import OnnxRuntimeSession, onnxruntime_session
from .openvino import OpenVINOSession

#: A form's ``runtime`` -> the session class that runs it.
RUNTIMES: Dict[str, Type[RuntimeSession]] = {
    OnnxRuntimeSession.name: OnnxRuntimeSession,
    OpenVINOSession.name: OpenVINOSession,
}

__all__ = [
    'RUNTIMES', 'RuntimeSession', 'OnnxRuntimeSession', 'OpenVINOSession',
    'onnxruntime_session'
]
