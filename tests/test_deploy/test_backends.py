"""deploy/backends: one module per runtime, the runtimes loaded lazily."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mmseg_repvgg.deploy.backends import (RUNTIMES, RuntimeSession,
                                          onnxruntime_session)
from mmseg_repvgg.deploy.backends.base import batches_at
from mmseg_repvgg.errors import ConfigError


def test_importing_the_backends_loads_no_runtime():
    # A fresh process: the suite itself may have imported the runtimes.
    code = ('import sys\n'
            'import mmseg_repvgg.deploy.backends as backends\n'
            'print(sorted(m for m in ("onnxruntime", "openvino", "nncf") '
            'if m in sys.modules), sorted(backends.RUNTIMES))\n')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[] ['onnxruntime', 'openvino']"


def test_runtimes_table_names_each_session_by_its_runtime():
    assert {
        name: cls.name
        for name, cls in RUNTIMES.items()
    } == {
        'onnxruntime': 'onnxruntime',
        'openvino': 'openvino'
    }
    assert all(issubclass(cls, RuntimeSession) for cls in RUNTIMES.values())


def _identity_onnx(path):
    onnx = pytest.importorskip('onnx')
    helper = onnx.helper
    value = helper.make_tensor_value_info('input', onnx.TensorProto.FLOAT,
                                          [1, 2])
    out = helper.make_tensor_value_info('out', onnx.TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph(
        [helper.make_node('Identity', ['input'], ['out'])], 'g', [value],
        [out])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8  # what onnxruntime 1.x reads
    onnx.save(model, str(path))


def test_onnxruntime_session_is_the_runtimes(tmp_path):
    # backends/onnxruntime.py imports the runtime, not itself.
    ort = pytest.importorskip('onnxruntime')
    path = tmp_path / 'identity.onnx'
    _identity_onnx(path)
    session = onnxruntime_session(str(path), threads=1)
    assert isinstance(session, ort.InferenceSession)
    array = np.array([[1.5, -2.0]], np.float32)
    assert (session.run(None, {'input': array})[0] == array).all()
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        with pytest.raises(ConfigError, match='CUDAExecutionProvider'):
            onnxruntime_session(str(path), device='cuda')


def test_calibration_batches_take_the_exported_shape():
    calibration = [torch.rand(2, 3, 8, 8), torch.rand(1, 3, 4, 4)]
    arrays = batches_at(calibration, (1, 3, 4, 4))
    assert [a.shape for a in arrays] == [(1, 3, 4, 4)] * 3
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)
    # A static graph takes batches of exactly N: a smaller rest is dropped.
    assert batches_at(calibration, (2, 3, 4, 4))[0].shape == (2, 3, 4, 4)
    assert len(batches_at(calibration, (2, 3, 4, 4))) == 1


class _Doubling(RuntimeSession):
    """A runtime whose 'session' doubles its input; counts its builds."""

    name = 'doubling'

    builds = 0

    def _build(self, shape):
        self.builds += 1
        return self.builds

    def _run(self, session, array):
        return array * 2


def test_session_is_built_once_per_input_shape():
    runtime = _Doubling(nn.Identity(), export=None)
    inputs = torch.ones(1, 3, 4, 4)
    assert torch.equal(runtime(inputs), inputs * 2)
    runtime(inputs)
    runtime(torch.ones(1, 3, 8, 4))
    assert runtime.sessions == {(1, 3, 4, 4): 1, (1, 3, 8, 4): 2}
    with pytest.raises(ConfigError, match='calibration'):
        _Doubling(nn.Identity(), export=None, int8=True)
