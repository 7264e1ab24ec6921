"""The deploy pipeline: :func:`build` makes a form step by step, each step
importing its kernel or backend only for a form that asks (fp32 loads none)."""
import contextlib
import copy
from typing import Callable, ContextManager, List, Optional, Sequence

import torch
from mmcv.cnn import fuse_conv_bn
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.fuse import fuse_segmentor, segmentor_logits
from ..models.reparam import reparameterize_model
from .deployed import DeployedModel
from .forms import Form, FormUnavailable
from .machine import machine


def fuse_model(model: nn.Module, level: str) -> nn.Module:
    """A copy of ``model`` fused to ``level`` (``'backbone'``: RepVGG blocks;
    ``'full'``: :func:`~mmseg_repvgg.models.fuse_segmentor`), the backbone's
    other conv-BN pairs folded too: a ResNet baseline's, like for like."""
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


def structure(form: Form,
              model: nn.Module,
              copy_model: bool = False) -> nn.Module:
    """``model`` (unchanged) with ``form``'s structure: fused, the low-res
    PSP bottleneck, and for channels_last or compiled forms PSP's pooling on
    a contiguous copy (CUDA's channels_last adaptive pooling is far slower);
    ``model`` itself if nothing changes and not ``copy_model``.

    Raises:
        FormUnavailable: A low-res form of a model without a PSPHead.
    """
    module = fuse_model(model, form.fuse)
    pooling = form.channels_last or form.runtime == 'compile'
    if module is model and (copy_model or form.lowres_psp or pooling):
        module = copy.deepcopy(model)
    if form.lowres_psp:
        from .kernels.psp_lowres import lowres_psp_heads
        if not lowres_psp_heads(module):
            raise FormUnavailable(
                f'{form.name}: the model has no PSPHead, so there is no '
                'low-res PSP bottleneck to use')
    if pooling:
        from .kernels.psp_pooling import contiguous_psp_pooling
        contiguous_psp_pooling(module)
    return module


def precision(form: Form, module: nn.Module, device: str,
              calibration: Optional[Sequence[Tensor]],
              notes: List[str]) -> nn.Module:
    """``module`` (the pipeline's copy) in the form's precision and memory
    format, on ``device``."""
    module = module.to(device).eval()
    if form.precision == 'int8':
        from .kernels.int8_recipe import quantize_calibrated
        if not calibration:
            raise ConfigError('the int8 forms need calibration batches (e.g. '
                              'tools/test.py --calibration-images 8)')
        with torch.inference_mode():
            module, lines = quantize_calibrated(
                module, calibration, lambda x: segmentor_logits(module, x),
                form.int8_recipe)
        bits = machine().int8_activation_bits
        notes.append(f'int8 activations: {bits} bits' + (
            '' if bits == 8 else ' (no VNNI: 7 bits keep the int16 pair sums '
            'of the kernel from saturating)'))
        notes.extend(lines)
    if form.precision == 'reduced':
        module = module.to(machine().reduced_dtype(device))
    if form.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def kernels(form: Form, module: nn.Module, notes: List[str]) -> nn.Module:
    """``module`` with the form's hand-written kernels swapped in."""
    if not form.winograd:
        return module
    from .kernels.guard import nnpack_problem
    from .kernels.winograd_convs import winograd_convs
    problem = nnpack_problem()
    module, names = winograd_convs(module, inplace=True)
    notes.append(f'{len(names)} 3x3 convs choose direct or Winograd per layer'
                 if problem is None else
                 f'Winograd unavailable, all convs direct: {problem}')
    return module


def input_cast(form: Form, device: str) -> Callable[[Tensor], Tensor]:
    """Casts a normalized fp32 batch to what the form's module takes."""
    low = machine().reduced_dtype(device)

    def cast(inputs: Tensor) -> Tensor:
        x = inputs.to(device)
        if form.precision == 'reduced':
            x = x.to(low)
        if form.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    return cast


def run_context(form: Form, device: str) -> Callable[[], ContextManager]:
    """The context a form's module runs under (grad mode, autocast)."""
    # The train-time form as mmseg's test loop runs it; inference_mode else.
    grad = torch.no_grad if form.fuse == 'none' else torch.inference_mode
    low = machine().reduced_dtype(device)
    device_type = torch.device(device).type

    def context() -> ContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(grad())
        if form.precision == 'autocast':
            stack.enter_context(torch.autocast(device_type, dtype=low))
        return stack

    return context


class _Logits(nn.Module):
    """A segmentor's logits as a plain forward (``torch.compile``'s)."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs: Tensor) -> Tensor:
        return segmentor_logits(self.segmentor, inputs)


def torch_runtime(form: Form, module: nn.Module, device: str,
                  notes: List[str]) -> DeployedModel:
    """The PyTorch runtime: eager, or ``torch.compile``."""
    cast, context = input_cast(form, device), run_context(form, device)
    logits = _Logits(module)
    if form.runtime == 'compile':
        # Freezing folds the weights on the first call: grad-free (context).
        logits = torch.compile(
            logits.eval(), dynamic=False, options=dict(freezing=True))

    def run(inputs):
        with context():
            return logits(cast(inputs))

    if form.runtime == 'compile':
        # Hooks do not fire in a compiled graph: no module is exposed.
        return DeployedModel(form, run, device, None, notes)
    if form.cuda_graph:
        from .cuda_graphs import GraphedCall
        graphed = GraphedCall(run)
        deployed = DeployedModel(form, graphed, device, module, notes)
        graphed.notes = deployed.notes  # each capture is noted when made
        return deployed
    return DeployedModel(
        form, run, device, module, notes, cast=cast, context=context)


def backend_runtime(form: Form, model: nn.Module, device: str,
                    calibration: Optional[Sequence[Tensor]],
                    input_shape: Optional[Sequence[int]],
                    workdir: Optional[str]) -> DeployedModel:
    """An onnxruntime or OpenVINO session of the form's structure."""
    from .backends import RUNTIMES
    from .onnx_export import export_onnx
    module = structure(form, model)  # fused: a copy
    notes = []
    if form.precision == 'int8' and calibration:
        # The runtime quantizes the export: of the recipe only equalization.
        from .kernels.int8_recipe import RECIPES, equalize_calibrated
        if RECIPES[form.int8_recipe].equalize:
            with torch.inference_mode():
                notes = equalize_calibrated(
                    module, calibration, lambda x: segmentor_logits(module, x))
    session = RUNTIMES[form.runtime](
        module,
        export=export_onnx,
        int8=form.precision == 'int8',
        calibration=calibration,
        device=device,
        workdir=workdir)
    if input_shape is not None:
        session.prepare(tuple(input_shape))
    session.notes[:0] = notes
    return DeployedModel(
        form, session, device, notes=session.notes, session=session)


def build(model: nn.Module,
          form: Form,
          calibration: Optional[Sequence[Tensor]] = None,
          device: str = 'cpu',
          input_shape: Optional[Sequence[int]] = None,
          workdir: Optional[str] = None) -> DeployedModel:
    """``form`` (checked to run here) of ``model`` (unchanged); arguments as
    :func:`~mmseg_repvgg.deploy.deploy_model`'s."""
    if form.runtime in ('onnxruntime', 'openvino'):
        return backend_runtime(form, model, device, calibration, input_shape,
                               workdir)
    notes: List[str] = []
    changes = (
        str(device) != 'cpu' or form.precision != 'fp32' or form.channels_last
        or form.winograd)
    module = structure(form, model, copy_model=changes)
    module = precision(form, module, device, calibration, notes)
    module = kernels(form, module, notes)
    return torch_runtime(form, module, device, notes)
