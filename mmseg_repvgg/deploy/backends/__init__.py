"""The runtimes a deploy form can run in, one module per runtime (as in
mmdeploy): each drives the runtime's own session and int8 tool on the ONNX
export, and imports the runtime (onnxruntime, OpenVINO, NNCF) only inside
the functions that use it. A leaf of the pipeline: the export function is
passed in, not imported.
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
