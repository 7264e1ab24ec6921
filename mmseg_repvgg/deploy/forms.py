"""The deploy forms of a segmentor: what each is, and whether it runs here.

A form is a fusion level (none, backbone, full), a precision (fp32, the
device's reduced float type with the weights cast, fp32 weights under
autocast, or int8 convs), a memory format, the PSP head's low-res
bottleneck, Winograd 3x3 convs, a runtime (PyTorch eager,
``torch.compile``, onnxruntime or OpenVINO) and, on CUDA, whether the
eager forward is replayed as a CUDA graph (:mod:`.cuda_graphs`).
:func:`~mmseg_repvgg.deploy.deployed.deploy_model` makes them.

A form whose precision the machine cannot run natively (bf16 on a CPU
without AVX512-BF16, say) is unavailable, with one sentence saying why and
what hardware it needs (:mod:`.machine`), unless ``allow_emulated``.
"""
import copy
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from mmcv.cnn import fuse_conv_bn
from torch import nn

from ..errors import ConfigError, UserError
from ..models.fuse import fuse_segmentor
from ..models.reparam import reparameterize_model
from .kernels.psp_lowres import lowres_psp_heads
from .kernels.psp_pooling import contiguous_psp_pooling
from .machine import machine


class FormUnavailable(UserError):
    """The form cannot run here; the message says why and what it needs."""


@dataclass(frozen=True)
class Form:
    """One way to run a segmentor.

    Args:
        name (str): Key in :data:`FORMS` (the tools' ``--deploy-form``)
            or :data:`ABLATIONS`.
        fuse (str): ``'none'`` (train-time form), ``'backbone'`` or
            ``'full'`` (:func:`~mmseg_repvgg.models.fuse_segmentor`).
        precision (str): ``'fp32'``, ``'reduced'`` (weights and input cast
            to the device's reduced type: bf16 on CPU, fp16 on CUDA),
            ``'autocast'`` (fp32 weights, reduced-precision autocast) or
            ``'int8'`` (convs in int8, calibrated).
        channels_last (bool): Weights and input in channels_last format.
        runtime (str): ``'torch'`` (eager), ``'compile'`` (``torch.compile``
            with inductor's freezing), ``'onnxruntime'`` or ``'openvino'``.
        lowres_psp (bool): PSP heads compute their bottleneck's pooled part
            at pool resolution (:mod:`.kernels.psp_lowres`).
        winograd (bool): 3x3 convs run by the faster of direct and
            Winograd, chosen per layer (:mod:`.kernels.winograd`).
        cuda_graph (bool): The eager forward is captured once per input
            shape and replayed as a CUDA graph (:mod:`.cuda_graphs`).
    """

    name: str
    fuse: str
    precision: str = 'fp32'
    channels_last: bool = False
    runtime: str = 'torch'
    lowres_psp: bool = False
    winograd: bool = False
    cuda_graph: bool = False

    def dtype_name(self, device: str = 'cpu') -> str:
        """``'fp32'``, ``'int8'``, or the reduced type's name on
        ``device`` (``'bf16'`` on CPU, ``'fp16'`` on CUDA)."""
        if self.precision in ('fp32', 'int8'):
            return self.precision
        return DTYPE_NAMES[machine().reduced_dtype(device)]

    def label(self, device: str = 'cpu') -> str:
        """Human-readable name, e.g. ``'fused bf16 channels_last'``."""
        head = {
            'onnxruntime': 'onnxruntime',
            'openvino': 'OpenVINO'
        }.get(self.runtime) or {
            'none': 'unfused',
            'backbone': 'backbone-fused',
            'full': 'fused'
        }[self.fuse]
        low = self.dtype_name(device)
        precision = f'fp32 + {low} autocast' if (self.precision
                                                 == 'autocast') else low
        return ' '.join(
            [head, precision] +
            (['channels_last'] if self.channels_last else []) +
            (['Winograd'] if self.winograd else []) +
            (['+ low-res PSP'] if self.lowres_psp else []) +
            (['torch.compile'] if self.runtime == 'compile' else []) +
            (['CUDA graph'] if self.cuda_graph else []))


def _table(*forms: Form) -> Dict[str, Form]:
    return {form.name: form for form in forms}


#: The forms a deployment ships, and ``--deploy-form`` offers: all fully
#: fused.
FORMS: Dict[str, Form] = _table(
    Form('fused', 'full'),
    Form('reduced', 'full', 'reduced'),
    Form('reduced_cl', 'full', 'reduced', channels_last=True),
    Form('lowres', 'full', lowres_psp=True),
    Form('reduced_lowres', 'full', 'reduced', lowres_psp=True),
    Form(
        'reduced_cl_lowres',
        'full',
        'reduced',
        channels_last=True,
        lowres_psp=True),
    Form('reduced_graph', 'full', 'reduced', cuda_graph=True),
    Form(
        'reduced_cl_lowres_graph',
        'full',
        'reduced',
        channels_last=True,
        lowres_psp=True,
        cuda_graph=True),
    Form('autocast', 'full', 'autocast'),
    Form('winograd', 'full', winograd=True),
    Form('winograd_lowres', 'full', winograd=True, lowres_psp=True),
    Form('compiled', 'full', 'reduced', runtime='compile'),
    Form('int8', 'full', 'int8'),
    Form('int8_lowres', 'full', 'int8', lowres_psp=True),
    Form('onnxruntime', 'full', runtime='onnxruntime'),
    Form('onnxruntime_int8', 'full', 'int8', runtime='onnxruntime'),
    Form(
        'onnxruntime_int8_lowres',
        'full',
        'int8',
        runtime='onnxruntime',
        lowres_psp=True),
    Form('openvino', 'full', runtime='openvino'),
    Form('openvino_int8', 'full', 'int8', runtime='openvino'),
)
#: Steps on the way to a deploy form, which the benchmark measures to show
#: what each step buys; never shipped, so not offered by ``--deploy-form``.
ABLATIONS: Dict[str, Form] = _table(
    Form('unfused', 'none'),
    Form('backbone_fused', 'backbone'),
    Form('fused_cl', 'full', channels_last=True),
    Form('compiled_fp32', 'full', runtime='compile'),
)
#: Every form :func:`~mmseg_repvgg.deploy.deploy_model` can make.
ALL_FORMS: Dict[str, Form] = {**FORMS, **ABLATIONS}
DTYPE_NAMES = {torch.bfloat16: 'bf16', torch.float16: 'fp16'}


def needs_calibration(name: str) -> bool:
    """Whether form ``name`` (or ``'auto'``, which may pick an int8 form)
    uses calibration batches."""
    return name == 'auto' or get_form(name, ablations=True).precision == 'int8'


def get_form(name: str, ablations: bool = False) -> Form:
    """The form called ``name``; a ConfigError listing them otherwise.

    Args:
        name (str): A key of :data:`FORMS` (or of :data:`ABLATIONS` with
            ``ablations``).
        ablations (bool): Accept the benchmark's ablation forms too.
    """
    table = ALL_FORMS if ablations else FORMS
    if name not in table:
        hint = (f' ({name} is a benchmark ablation, not a deploy form)'
                if name in ABLATIONS else '')
        raise ConfigError(f'unknown deploy form {name!r}{hint}; choose from '
                          f'auto, {", ".join(table)}')
    return table[name]


def _runtime_missing(form: Form) -> Optional[str]:
    """Why the form's runtime packages cannot be imported, if they cannot."""
    modules = dict(
        onnxruntime=['onnxruntime'],
        openvino=['openvino'] +
        (['nncf'] if form.precision == 'int8' else [])).get(form.runtime, [])
    extra = 'deploy' if form.runtime == 'onnxruntime' else 'openvino'
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            return (f'{module} is not installed; pip install '
                    f"'mmseg-repvgg[{extra}]'")
    return None


def why_unavailable(form: Form,
                    device: str = 'cpu',
                    allow_emulated: bool = False) -> Optional[str]:
    """None if ``form`` can run on ``device`` here; else one sentence why.

    Args:
        form (Form): The form.
        device (str): ``'cpu'`` or a CUDA device.
        allow_emulated (bool): Accept a reduced float precision that the
            hardware only emulates (slow, but it runs).
    """
    cuda = str(device).startswith('cuda')
    if form.cuda_graph and not cuda:
        return ('CUDA graphs replay recorded CUDA kernels: the form needs a '
                'CUDA device (use the same form without _graph on the CPU)')
    if cuda and form.runtime == 'openvino':
        return 'the OpenVINO forms run on the CPU'
    if cuda and form.winograd:
        return 'the Winograd forms are CPU forms (NNPACK)'
    if cuda and form.precision == 'int8':
        return machine().why_not('int8', device)
    reason = machine().why_not(form.dtype_name(device), device)
    if reason and not (allow_emulated
                       and form.dtype_name(device) in ('bf16', 'fp16')):
        return reason
    return _runtime_missing(form)


def available_forms(device: str = 'cpu',
                    allow_emulated: bool = False) -> Dict[str, Optional[str]]:
    """``{form name: None if it runs here, else why not}`` for every
    shippable form."""
    return {
        name: why_unavailable(form, device, allow_emulated)
        for name, form in FORMS.items()
    }


def fuse_model(model: nn.Module, level: str) -> nn.Module:
    """A copy of ``model`` fused to ``level`` (``model`` is unchanged).

    ``'backbone'`` re-parameterizes the RepVGG blocks; ``'full'`` is
    :func:`~mmseg_repvgg.models.fuse_segmentor`. Either then folds the
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
    :func:`fuse_model`), for a low-res form with the PSP bottleneck at
    pool resolution, and for a channels_last or compiled form (inductor
    picks channels_last itself) with PSP's pyramid pooling on a contiguous
    copy (:mod:`.kernels.psp_pooling`: equal values, no slow channels_last
    pooling). ``model`` is left unchanged; a form that changes no
    structure returns ``model`` itself unless ``copy_model``.

    Raises:
        FormUnavailable: A low-res form of a model without a PSPHead.
    """
    module = fuse_model(model, form.fuse)
    pooling = form.channels_last or form.runtime == 'compile'
    if module is model and (copy_model or form.lowres_psp or pooling):
        module = copy.deepcopy(model)
    if form.lowres_psp and not lowres_psp_heads(module):
        raise FormUnavailable(f'{form.name}: the model has no PSPHead, so '
                              'there is no low-res PSP bottleneck to use')
    if pooling:
        contiguous_psp_pooling(module)
    return module
