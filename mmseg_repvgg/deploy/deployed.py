"""deploy_model: make one deploy form of a segmentor.

Every form is returned as a :class:`DeployedModel`: ``forward(inputs)``
takes the normalized NCHW fp32 batch that mmseg's data preprocessor gives
and returns fp32 logits at the input's size, whatever runs inside (PyTorch,
onnxruntime or OpenVINO). :func:`deployed_segmentor` puts one back inside
an mmseg segmentor, so mmseg's own inference, test loop and evaluator run
it unchanged.
"""
import contextlib
import copy
from typing import (Callable, ContextManager, List, Optional, Sequence, Tuple,
                    Union)

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.fuse import segmentor_logits
from .forms import (Form, FormUnavailable, form_structure, get_form,
                    why_unavailable)
from .kernels.guard import nnpack_problem
from .kernels.int8 import calibrate_activation_ranges, quantize_int8
from .kernels.winograd_convs import winograd_convs
from .machine import machine


class DeployedModel(nn.Module):
    """A segmentor in one deploy form: normalized NCHW fp32 batch in, fp32
    logits at the input's size out.

    Args:
        form (Form): The form.
        run (callable): Runs the form on an fp32 batch (on ``device``).
        device (str): Where it runs; inputs are moved there.
        segmentor (nn.Module, optional): The PyTorch model inside (None
            for runtime sessions).
        notes (list[str]): What was decided while making it (e.g. int8
            activation bits, Winograd fallbacks).
        run_backbone (callable, optional): Runs only the backbone of an
            eager PyTorch form (for profiling).
        session (RuntimeSession, optional): The onnxruntime or OpenVINO
            session of a runtime form; it is also what ``run`` calls.
    """

    def __init__(self,
                 form: Form,
                 run: Callable[[Tensor], Tensor],
                 device: str = 'cpu',
                 segmentor: Optional[nn.Module] = None,
                 notes: Sequence[str] = (),
                 run_backbone: Optional[Callable[[Tensor], object]] = None,
                 session: Optional[nn.Module] = None):
        super().__init__()
        self.form = form
        self.device = str(device)
        self.session = session
        # A plain attribute: a session passed as ``run`` is registered once,
        # as ``session``, not a second time under this name.
        object.__setattr__(self, '_run', run)
        self.segmentor = segmentor
        self.notes = list(notes)
        self.run_backbone = run_backbone

    def forward(self, inputs: Tensor) -> Tensor:
        return self._run(inputs.to(self.device)).float()

    def extra_repr(self) -> str:
        return f'form={self.form.name!r} ({self.form.label(self.device)})'


#: (module, cast an fp32 batch to its input, context factory to run in)
TorchForm = Tuple[nn.Module, Callable[[Tensor], Tensor],
                  Callable[[], ContextManager]]


def _quantize(module: nn.Module, calibration: Optional[Sequence[Tensor]],
              notes: List[str]) -> nn.Module:
    if not calibration:
        raise ConfigError('the int8 forms need calibration batches (e.g. '
                          'tools/test.py --calibration-images 8)')
    with torch.inference_mode():
        ranges = calibrate_activation_ranges(
            module, calibration, lambda x: segmentor_logits(module, x))
    bits = machine().int8_activation_bits
    notes.append(f'int8 activations: {bits} bits' + (
        '' if bits == 8 else ' (no VNNI: 7 bits keep the int16 pair sums of '
        'the kernel from saturating)'))
    return quantize_int8(module, ranges, inplace=True)[0]


def torch_form(form: Form,
               model: nn.Module,
               device: str = 'cpu',
               calibration: Optional[Sequence[Tensor]] = None,
               notes: Optional[List[str]] = None) -> TorchForm:
    """Make a PyTorch form of ``model`` (left unchanged) on ``device``.

    Returns:
        tuple: The module, a function that casts an fp32 batch to the
        form's input, and a context factory to run it under.
    """
    notes = [] if notes is None else notes
    changes = (
        str(device) != 'cpu' or form.precision != 'fp32' or form.channels_last
        or form.winograd)
    module = form_structure(form, model, copy_model=changes)
    module = module.to(device).eval()
    if form.precision == 'int8':
        module = _quantize(module, calibration, notes)
    if form.winograd:
        problem = nnpack_problem()
        module, names = winograd_convs(module, inplace=True)
        notes.append(
            f'{len(names)} 3x3 convs choose direct or Winograd per layer'
            if problem is None else f'Winograd unavailable, all convs direct: '
            f'{problem}')
    low = machine().reduced_dtype(device)
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


def _torch_deployed(form: Form, model: nn.Module, device: str,
                    calibration: Optional[Sequence[Tensor]]) -> DeployedModel:
    notes: List[str] = []
    module, cast, context = torch_form(form, model, device, calibration, notes)
    if form.runtime == 'compile':
        # Inductor's freezing (through torch.compile's public ``options``)
        # folds the weights into the graph on the first call, which must
        # be grad-free: ``context`` gives inference mode.
        compiled = torch.compile(
            _Logits(module).eval(), dynamic=False, options=dict(freezing=True))

        def run(inputs):
            with context():
                return compiled(cast(inputs))

        # Hooks do not fire in a compiled graph: no backbone timing.
        return DeployedModel(form, run, device, None, notes)

    def run(inputs):
        with context():
            return segmentor_logits(module, cast(inputs))

    if form.cuda_graph:
        from .cuda_graphs import GraphedCall

        graphed = GraphedCall(run)
        # Hooks do not fire in a replay: no backbone timing.
        deployed = DeployedModel(form, graphed, device, module, notes)
        graphed.notes = deployed.notes  # each capture is noted when made
        return deployed

    def run_backbone(inputs):
        with context():
            return module.backbone(cast(inputs))

    return DeployedModel(form, run, device, module, notes, run_backbone)


def _runtime_deployed(form: Form, model: nn.Module, device: str,
                      calibration: Optional[Sequence[Tensor]],
                      input_shape: Optional[Sequence[int]],
                      workdir: Optional[str]) -> DeployedModel:
    from .backends import RUNTIMES
    structure = form_structure(form, model)  # export fuses a copy itself
    session = RUNTIMES[form.runtime](
        structure,
        int8=form.precision == 'int8',
        calibration=calibration,
        device=device,
        workdir=workdir)
    if input_shape is not None:
        session.prepare(tuple(input_shape))
    return DeployedModel(
        form, session, device, notes=session.notes, session=session)


def deploy_model(model: nn.Module,
                 form: Union[str, Form] = 'auto',
                 calibration: Optional[Sequence[Tensor]] = None,
                 device: str = 'cpu',
                 allow_emulated: bool = False,
                 input_shape: Optional[Sequence[int]] = None,
                 workdir: Optional[str] = None) -> DeployedModel:
    """Make one deploy form of a segmentor.

    Args:
        model (nn.Module): The segmentor (train-time or fused, eval mode,
            on the CPU); left unchanged.
        form (str | Form): A name in :data:`~.forms.FORMS`, a
            :class:`~.forms.Form` (the benchmark's ablations), or ``'auto'``:
            the fastest form measured on this machine among those that run
            natively here and, given calibration data, label at least
            :data:`~.auto.AUTO_MIN_AGREEMENT` of held-out calibration pixels
            as fp32 fused does (:mod:`.auto`).
        calibration (Sequence[Tensor], optional): Normalized fp32 batches
            (:func:`~mmseg_repvgg.deploy.calibration.calibration_batches`);
            required by the int8 forms.
        device (str): Where the form runs.
        allow_emulated (bool): Run a reduced float precision the hardware
            only emulates.
        input_shape (Sequence[int], optional): N, C, H, W the runtime forms
            prepare for now (else on first use of each shape).
        workdir (str, optional): Where runtime forms write their model
            files (a temporary folder by default).

    Returns:
        DeployedModel: ``forward(inputs) -> logits``; ``.form`` names the
        form chosen, ``.notes`` what was decided.

    Raises:
        FormUnavailable: The form cannot run here (the message says why).
    """
    if form == 'auto':
        from .auto import auto_deploy
        return auto_deploy(model, calibration, device, input_shape)
    spec = form if isinstance(form, Form) else get_form(form)
    reason = why_unavailable(spec, device, allow_emulated)
    if reason:
        raise FormUnavailable(f'{spec.name}: {reason}')
    if spec.runtime in ('onnxruntime', 'openvino'):
        return _runtime_deployed(spec, model, device, calibration, input_shape,
                                 workdir)
    return _torch_deployed(spec, model, device, calibration)


def deployed_segmentor(segmentor: nn.Module,
                       deployed: DeployedModel,
                       inplace: bool = False) -> nn.Module:
    """The segmentor with its ``encode_decode`` run by ``deployed``.

    mmseg's whole and slide inference, the resizing to the original image
    and the argmax all call ``encode_decode``; only that method changes,
    so the config's test loop, evaluator and ``mmseg.apis`` score and run
    the deploy form exactly as they do the PyTorch model.

    Args:
        segmentor (nn.Module): The mmseg segmentor (its data preprocessor,
            test_cfg and postprocessing are used as they are).
        deployed (DeployedModel): From :func:`deploy_model`.
        inplace (bool): Change ``segmentor`` itself; by default a shallow
            copy (sharing the submodules) is changed.
    """
    model = segmentor if inplace else copy.copy(segmentor)

    def encode_decode(inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        return deployed(inputs).to(inputs.device)

    # An instance attribute (a plain function: not registered as a module,
    # so the state dict is unchanged) shadows the class's method.
    model.encode_decode = encode_decode
    model.deploy_form = deployed.form.name
    return model
