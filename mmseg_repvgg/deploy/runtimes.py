"""onnxruntime and OpenVINO sessions as deploy forms.

Each session exports the segmentor (already in its form's structure) to
ONNX at the input shape it is first asked for (a static graph, which both
runtimes optimize best), optionally quantizes it to int8 with the runtime's
own post-training tool (onnxruntime's ``quantize_static``, OpenVINO's NNCF),
and runs it. Sessions are kept per input shape, so mmseg's slide inference
(one crop size) and whole-image inference both work. Nothing here writes a
quantizer or an inference engine: it only drives the runtimes.

Calibration batches are resized to the exported shape when they differ:
the activation ranges a quantizer needs do not depend on the image size.
"""
import contextlib
import os.path as osp
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .machine import machine
from .onnx_export import export_onnx, onnxruntime_session

Shape = Tuple[int, ...]


def _batches_at(calibration: Sequence[Tensor],
                shape: Shape) -> List[np.ndarray]:
    out = []
    for batch in calibration:
        if tuple(batch.shape[2:]) != tuple(shape[2:]):
            batch = F.interpolate(
                batch,
                size=tuple(shape[2:]),
                mode='bilinear',
                align_corners=False)
        for image in batch.split(shape[0]):
            if image.shape[0] == shape[0]:
                out.append(np.ascontiguousarray(image.float().numpy()))
    return out


class RuntimeSession(nn.Module):
    """Base: export per shape, quantize if asked, run.

    Args:
        structure (nn.Module): The segmentor in the form's structure
            (fused or not: the export fuses a copy).
        int8 (bool): Quantize with the runtime's own tool.
        calibration (Sequence[Tensor], optional): Normalized fp32 batches
            for int8.
        device (str): ``'cpu'`` (or ``'cuda'`` for onnxruntime's CUDA
            provider).
        workdir (str, optional): Where the model files go; a temporary
            folder (removed with the session) by default.
        threads (int, optional): Intra-op threads; torch's by default.
    """

    name = 'runtime'

    def __init__(self,
                 structure: nn.Module,
                 int8: bool = False,
                 calibration: Optional[Sequence[Tensor]] = None,
                 device: str = 'cpu',
                 workdir: Optional[str] = None,
                 threads: Optional[int] = None):
        super().__init__()
        if int8 and not calibration:
            raise ConfigError(f'the {self.name} int8 form needs calibration '
                              'batches (e.g. --calibration-images 8)')
        self.structure = structure
        self.int8 = int8
        self.calibration = list(calibration or [])
        self.device = str(device)
        self.threads = threads or torch.get_num_threads()
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix='mmseg_repvgg_')
            workdir = self._tmp.name
        self.workdir = workdir
        self.sessions: Dict[Shape, object] = {}
        self.files: Dict[Shape, str] = {}
        self.notes: List[str] = []
        if int8 and not machine().vnni:
            self.notes.append(f'{self.name} int8: no VNNI on this CPU, so '
                              'the quantizer avoids int16 saturation')

    def _onnx_path(self, shape: Shape) -> str:
        path = osp.join(self.workdir,
                        f'{self.name}_{"x".join(map(str, shape))}.onnx')
        export_onnx(self.structure, path, tuple(shape[2:]))
        return path

    def prepare(self, shape: Shape) -> None:
        """Export (and quantize) for inputs of ``shape`` if not done yet."""
        shape = tuple(shape)
        if shape not in self.sessions:
            self.sessions[shape] = self._build(shape)

    def forward(self, inputs: Tensor) -> Tensor:
        shape = tuple(inputs.shape)
        self.prepare(shape)
        array = np.ascontiguousarray(inputs.detach().float().cpu().numpy())
        return torch.from_numpy(self._run(self.sessions[shape], array))

    def weights_bytes(self) -> int:
        """Size of the largest model file a session runs."""
        return max((osp.getsize(p) for p in self.files.values()), default=0)

    def _build(self, shape: Shape):
        raise NotImplementedError

    def _run(self, session, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeSession(RuntimeSession):
    """onnxruntime (CPU or CUDA provider); int8 by ``quantize_static``:
    QDQ, weights int8 per channel, activations uint8 per tensor, min/max
    calibration. On CPUs without VNNI ``reduce_range`` keeps the weights
    to 7 bits, onnxruntime's own remedy for the int16 saturation of the
    u8 x s8 kernels there."""

    name = 'onnxruntime'

    def _quantize(self, path: str, shape: Shape) -> str:
        from onnxruntime.quantization import (CalibrationDataReader,
                                              QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
        batches = iter(_batches_at(self.calibration, shape))

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


@contextlib.contextmanager
def _recursion_limit(limit: int):
    """NNCF walks the graph recursively; a full-size PSPNet export goes
    deeper than Python's default limit. Raised only for that call."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class OpenVINOSession(RuntimeSession):
    """OpenVINO's CPU plugin on the exported ONNX (latency hint); int8 by
    NNCF's post-training ``quantize`` calibrated on the given batches. On
    CPUs without VNNI NNCF's overflow fix is applied to every layer (its
    remedy for the same int16 saturation)."""

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
        batches = _batches_at(self.calibration, shape)
        overflow = (
            OverflowFix.FIRST_LAYER if machine().vnni else OverflowFix.ENABLE)
        # NNCF draws progress bars on stdout, which is the tools' report.
        with _recursion_limit(100000), contextlib.redirect_stdout(sys.stderr):
            return nncf.quantize(
                model,
                nncf.Dataset(batches),
                subset_size=len(batches),
                advanced_parameters=AdvancedQuantizationParameters(
                    overflow_fix=overflow))

    def _build(self, shape: Shape):
        import openvino as ov
        path = self._onnx_path(shape)
        model = self.core.read_model(path)
        if self.int8:
            model = self._quantize(model, shape)
            path = osp.splitext(path)[0] + '.int8.xml'
            ov.save_model(model, path)
        self.files[shape] = path
        return self.core.compile_model(
            model,
            'CPU',
            {
                'PERFORMANCE_HINT': 'LATENCY',
                'INFERENCE_NUM_THREADS': self.threads,
                # OpenVINO runs "fp32" models in bf16 on CPUs with native
                # bf16 unless told otherwise; this form is the fp32 one.
                'INFERENCE_PRECISION_HINT': 'f32',
            })

    def _run(self, compiled, array: np.ndarray) -> np.ndarray:
        return compiled(array)[0]


RUNTIMES = {'onnxruntime': OnnxRuntimeSession, 'openvino': OpenVINOSession}
