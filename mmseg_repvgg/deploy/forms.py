"""The deploy forms: what each is (the catalogue :data:`FORMS`).

Whether a form runs here is :mod:`.availability`'s answer; the pipeline
(:mod:`.pipeline`) makes it.
"""
from dataclasses import dataclass
from typing import Dict

import torch

from ..errors import ConfigError, UserError
from .machine import machine


class FormUnavailable(UserError):
    """The form cannot run here; the message says why and what it needs."""


@dataclass(frozen=True)
class Form:
    """One way to run a segmentor.

    Args:
        name (str): Key in :data:`FORMS` (the tools' ``--deploy-form``),
            or the benchmark's name of an ablation step.
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
DTYPE_NAMES = {torch.bfloat16: 'bf16', torch.float16: 'fp16'}


def needs_calibration(form) -> bool:
    """Whether ``form`` (a name, a :class:`Form`, or ``'auto'``, which may
    pick an int8 form) uses calibration batches."""
    if isinstance(form, Form):
        return form.precision == 'int8'
    return form == 'auto' or get_form(form).precision == 'int8'


def get_form(name: str) -> Form:
    """The form called ``name``; a ConfigError listing them otherwise."""
    if name not in FORMS:
        raise ConfigError(f'unknown deploy form {name!r}; choose from '
                          f'auto, {", ".join(FORMS)}')
    return FORMS[name]
