"""The inference forms a segmentor is measured in, and how each is made.

A form is a fusion level (none, backbone, full), a precision (fp32, the
device's reduced type with the weights cast, fp32 weights under autocast,
or int8 convs on x86 CPUs), a memory format and a runtime (PyTorch eager,
``torch.compile`` or onnxruntime).
"""
import contextlib
import copy
import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Optional, Tuple

import numpy as np
import torch
from mmcv.cnn import fuse_conv_bn
from torch import Tensor, nn

from ..deploy import fuse_segmentor, segmentor_logits
from ..errors import ConfigError
from ..models.int8 import (calibrate_activation_ranges, int8_supported,
                           quantize_int8)
from ..models.psp_lowres import lowres_psp_heads
from ..models.reparam import reparameterize_model
from ..onnx_export import export_onnx
from .measure import tensor_bytes


class FormUnavailable(Exception):
    """The form cannot run here (e.g. no CUDA provider for onnxruntime)."""


@dataclass(frozen=True)
class Form:
    """One way to run a segmentor.

    Args:
        name (str): Key in :data:`FORMS`, JSON and the tool's ``--forms``.
        fuse (str): ``'none'`` (train-time form), ``'backbone'`` or
            ``'full'`` (backbone fused, heads' conv+BN folded, auxiliary
            head dropped: :func:`~mmseg_repvgg.deploy.fuse_segmentor`).
        precision (str): ``'fp32'``, ``'reduced'`` (weights and input cast
            to :func:`reduced_dtype`), ``'autocast'`` (fp32 weights,
            reduced-precision autocast) or ``'int8'`` (convs in int8 by
            oneDNN, calibrated: :mod:`mmseg_repvgg.models.int8`; x86 CPU).
        channels_last (bool): Weights and input in channels_last format.
        runtime (str): ``'torch'`` (eager), ``'compile'`` (``torch.compile``
            with inductor's freezing: weights folded into the graph,
            oneDNN convs prepacked with their ReLU fused) or
            ``'onnxruntime'``.
        lowres_psp (bool): PSP heads compute their bottleneck's pooled
            part at pool resolution
            (:func:`~mmseg_repvgg.models.psp_lowres.lowres_psp_heads`).
    """

    name: str
    fuse: str
    precision: str = 'fp32'
    channels_last: bool = False
    runtime: str = 'torch'
    lowres_psp: bool = False

    def label(self, device: str) -> str:
        """Human-readable name, e.g. ``'fused bf16 channels_last'``."""
        head = 'onnxruntime' if self.runtime == 'onnxruntime' else {
            'none': 'unfused',
            'backbone': 'backbone-fused',
            'full': 'fused'
        }[self.fuse]
        low = DTYPE_NAMES[reduced_dtype(device)]
        precision = {
            'fp32': 'fp32',
            'reduced': low,
            'autocast': f'fp32 + {low} autocast',
            'int8': 'int8'
        }[self.precision]
        return ' '.join(
            [head, precision] +
            (['channels_last'] if self.channels_last else []) +
            (['+ low-res PSP'] if self.lowres_psp else []) +
            (['torch.compile'] if self.runtime == 'compile' else []))


FORMS = {
    form.name: form
    for form in (
        Form('unfused', 'none'),
        Form('backbone_fused', 'backbone'),
        Form('fused', 'full'),
        Form('fused_cl', 'full', channels_last=True),
        Form('reduced', 'full', 'reduced'),
        Form('reduced_cl', 'full', 'reduced', channels_last=True),
        Form('lowres', 'full', lowres_psp=True),
        Form('reduced_lowres', 'full', 'reduced', lowres_psp=True),
        Form('autocast', 'full', 'autocast'),
        Form('compiled_fp32', 'full', runtime='compile'),
        Form('compiled', 'full', 'reduced', runtime='compile'),
        Form('onnxruntime', 'full', runtime='onnxruntime'),
        Form('int8', 'full', 'int8'),
        Form('int8_lowres', 'full', 'int8', lowres_psp=True),
        Form('onnxruntime_int8', 'full', 'int8', runtime='onnxruntime'),
        Form(
            'onnxruntime_int8_lowres',
            'full',
            'int8',
            runtime='onnxruntime',
            lowres_psp=True),
    )
}
#: Forms that a deployment can use; the fastest measured is the fast path.
DEPLOY_FORMS = ('fused', 'fused_cl', 'reduced', 'reduced_cl', 'lowres',
                'reduced_lowres', 'autocast', 'compiled_fp32', 'compiled',
                'onnxruntime', 'int8', 'int8_lowres', 'onnxruntime_int8',
                'onnxruntime_int8_lowres')

DTYPE_NAMES = {torch.bfloat16: 'bf16', torch.float16: 'fp16'}


def reduced_dtype(device: str) -> torch.dtype:
    """fp16 on CUDA; bf16 on CPU (oneDNN runs it natively on AVX512-BF16
    and AMX, and fp16 has no fast CPU kernels)."""
    return torch.float16 if str(device).startswith('cuda') else torch.bfloat16


def fuse_model(model: nn.Module, level: str) -> nn.Module:
    """A copy of ``model`` fused to ``level`` (``model`` is unchanged).

    ``'backbone'`` re-parameterizes the RepVGG blocks; ``'full'`` is
    :func:`~mmseg_repvgg.deploy.fuse_segmentor`. Either then folds the
    backbone's remaining ``conv -> BN`` pairs with mmcv's ``fuse_conv_bn``:
    none in a RepVGG backbone, every one in a ResNet, so that a baseline's
    fused form is the like-for-like deploy form.
    """
    if level == 'none':
        return model
    if level == 'backbone':
        fused = reparameterize_model(model)
    elif level == 'full':
        fused, _ = fuse_segmentor(model)
    else:
        raise ValueError(f'unknown fusion level {level!r}')
    fuse_conv_bn(fused.backbone)
    return fused.eval()


def form_structure(form: Form,
                   model: nn.Module,
                   copy_model: bool = False) -> nn.Module:
    """``model`` with ``form``'s structure: fused to its level (see
    :func:`fuse_model`) and, for a low-res form, with the PSP bottleneck at
    pool resolution. ``model`` is left unchanged; a form that changes no
    structure returns ``model`` itself unless ``copy_model``.

    Raises:
        FormUnavailable: A low-res form of a model without a PSPHead.
    """
    module = fuse_model(model, form.fuse)
    if module is model and (copy_model or form.lowres_psp):
        module = copy.deepcopy(model)
    if form.lowres_psp and not lowres_psp_heads(module):
        raise FormUnavailable('the model has no PSPHead')
    return module


@dataclass
class PreparedForm:
    """A form bound to its input, ready to time.

    Args:
        run (callable): One forward; returns the raw output.
        to_logits (callable): Raw output -> fp32 CPU logits tensor.
        weights_bytes (int): Bytes of the weights the form holds.
        module (nn.Module, optional): The torch model (None for ORT).
        run_backbone (callable, optional): One backbone forward.
        cleanup (callable): Releases files the form wrote.
    """

    run: Callable[[], object]
    to_logits: Callable[[object], Tensor]
    weights_bytes: int
    module: Optional[nn.Module] = None
    run_backbone: Optional[Callable[[], object]] = None
    cleanup: Callable[[], None] = lambda: None


#: (module, cast an fp32 batch to its input, context factory to run in)
TorchForm = Tuple[nn.Module, Callable[[Tensor], Tensor],
                  Callable[[], ContextManager]]


def _quantize(module: nn.Module, device: str,
              calibration: Optional[Iterable[Tensor]]) -> nn.Module:
    if str(device) != 'cpu' or not int8_supported():
        raise FormUnavailable('int8 runs on x86 CPUs with oneDNN only')
    if calibration is None:
        raise ConfigError('the int8 form needs calibration batches')
    with torch.inference_mode():
        ranges = calibrate_activation_ranges(
            module, calibration, lambda x: segmentor_logits(module, x))
    return quantize_int8(module, ranges, inplace=True)[0]


def torch_form(form: Form,
               model: nn.Module,
               device: str,
               calibration: Optional[Iterable[Tensor]] = None) -> TorchForm:
    """Make a PyTorch form of ``model`` (left unchanged) on ``device``.

    Args:
        form (Form): What to make.
        model (nn.Module): The segmentor, eval mode.
        device (str): Where the form runs.
        calibration (Iterable[Tensor], optional): Normalized fp32 batches
            that set the int8 forms' activation ranges (required by them,
            unused by the others).

    Returns:
        tuple: The module, a function that casts an fp32 batch to the
        form's input, and a context factory to run it under.
    """
    # Moving, casting or quantizing below must not touch the source model.
    changes = (
        str(device) != 'cpu' or form.precision != 'fp32' or form.channels_last)
    module = form_structure(form, model, copy_model=changes)
    module = module.to(device).eval()
    if form.precision == 'int8':
        module = _quantize(module, device, calibration)
    low = reduced_dtype(device)
    if form.precision == 'reduced':
        module = module.to(low)
    if form.channels_last:
        module = module.to(memory_format=torch.channels_last)

    def cast(inputs: Tensor) -> Tensor:
        x = inputs.to(device)
        if form.precision == 'reduced':
            x = x.to(low)
        if form.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # The train-time form runs as mmseg's test loop runs it (no_grad); the
    # deploy forms use inference_mode, which also skips version counters.
    grad = torch.no_grad if form.fuse == 'none' else torch.inference_mode
    device_type = torch.device(device).type

    def context() -> ContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(grad())
        if form.precision == 'autocast':
            stack.enter_context(torch.autocast(device_type, dtype=low))
        return stack

    return module, cast, context


class _Logits(nn.Module):
    """A segmentor's logits as a plain forward, for ``torch.compile``."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs: Tensor) -> Tensor:
        return segmentor_logits(self.segmentor, inputs)


def _compiled_form(form: Form, model: nn.Module, inputs: Tensor,
                   device: str) -> PreparedForm:
    from torch._inductor import config as inductor_config
    module, cast, context = torch_form(form, model, device)
    x = cast(inputs)
    compiled = torch.compile(_Logits(module).eval(), dynamic=False)
    # Compile here, so that the form's preparation time holds it and its
    # first timed call does not; freezing needs a grad-free first call.
    with context(), inductor_config.patch(freezing=True):
        compiled(x)

    def run():
        with context():
            return compiled(x)

    # No backbone timer or profile: hooks do not fire in a compiled graph.
    return PreparedForm(
        run=run,
        to_logits=lambda out: out.detach().float().cpu(),
        weights_bytes=tensor_bytes(module))


def _torch_form(form: Form, model: nn.Module, inputs: Tensor, device: str,
                calibration: Optional[Iterable[Tensor]]) -> PreparedForm:
    module, cast, context = torch_form(form, model, device, calibration)
    x = cast(inputs)

    def run():
        with context():
            return segmentor_logits(module, x)

    def run_backbone():
        with context():
            return module.backbone(x)

    return PreparedForm(
        run=run,
        to_logits=lambda out: out.detach().float().cpu(),
        weights_bytes=tensor_bytes(module),
        module=module,
        run_backbone=run_backbone)


def _onnx_session(path: str, device: str, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise FormUnavailable('onnxruntime is not installed') from None
    provider = 'CUDAExecutionProvider' if str(device).startswith(
        'cuda') else 'CPUExecutionProvider'
    if provider not in ort.get_available_providers():
        raise FormUnavailable(f'onnxruntime has no {provider} here')
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return ort.InferenceSession(path, options, providers=[provider])


def _quantize_onnx(path: str, calibration: Optional[Iterable[Tensor]]) -> str:
    """onnxruntime's own static int8 quantization of the exported model:
    QDQ, weights int8 per channel, activations uint8 per tensor (the
    scheme of :mod:`mmseg_repvgg.models.int8`), min/max calibration."""
    if calibration is None:
        raise ConfigError('the ONNX int8 form needs calibration batches')
    try:
        from onnxruntime.quantization import (CalibrationDataReader,
                                              QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise FormUnavailable('onnxruntime is not installed') from None

    class Batches(CalibrationDataReader):

        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {
                'input': np.ascontiguousarray(batch.numpy())
            }

    prepared, quantized = path + '.pre.onnx', path + '.int8.onnx'
    quant_pre_process(path, prepared)
    quantize_static(
        prepared,
        quantized,
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8)
    os.remove(prepared)
    return quantized


def _onnx_form(form: Form, model: nn.Module, inputs: Tensor, device: str,
               threads: int, workdir: str,
               calibration: Optional[Iterable[Tensor]]) -> PreparedForm:
    if inputs.shape[0] != 1:
        raise FormUnavailable('the ONNX form is exported for batch 1')
    if form.precision == 'int8' and str(device) != 'cpu':
        raise FormUnavailable('the int8 forms are CPU forms')
    os.makedirs(workdir, exist_ok=True)
    path = osp.join(workdir, f'benchmark_{os.getpid()}.onnx')
    paths = [path]

    def cleanup():
        for file in paths:
            if osp.exists(file):
                os.remove(file)

    if form.lowres_psp:  # the low-res bottleneck exports as plain matmuls
        model = form_structure(form, model)  # (export_onnx fuses the rest)
    try:
        export_onnx(model, path, tuple(inputs.shape[2:]))
        if form.precision == 'int8':
            path = _quantize_onnx(path, calibration)
            paths.append(path)
    except ConfigError as err:
        cleanup()
        raise FormUnavailable(str(err)) from None
    session = _onnx_session(path, device, threads)
    feed = {'input': np.ascontiguousarray(inputs.numpy())}

    return PreparedForm(
        run=lambda: session.run(None, feed)[0],
        to_logits=torch.from_numpy,
        weights_bytes=osp.getsize(path),
        cleanup=cleanup)


def prepare_form(
        form: Form,
        model: nn.Module,
        inputs: Tensor,
        device: str,
        threads: int,
        workdir: str,
        calibration: Optional[Iterable[Tensor]] = None) -> PreparedForm:
    """Make ``form`` of ``model`` (left unchanged) for ``inputs``.

    Args:
        form (Form): What to make.
        model (nn.Module): The train-time segmentor, on the CPU, eval mode.
        inputs (Tensor): Normalized NCHW fp32 batch on the CPU.
        device (str): Where the form runs.
        threads (int): onnxruntime's intra-op threads.
        workdir (str): Where the ONNX file is written (then removed).
        calibration (Iterable[Tensor], optional): Batches for the int8
            forms' activation ranges (see :func:`torch_form`).

    Raises:
        FormUnavailable: The form cannot run on this machine.
    """
    if form.runtime == 'onnxruntime':
        return _onnx_form(form, model, inputs, device, threads, workdir,
                          calibration)
    if form.runtime == 'compile':
        return _compiled_form(form, model, inputs, device)
    return _torch_form(form, model, inputs, device, calibration)
