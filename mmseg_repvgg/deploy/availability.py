"""Whether a deploy form runs here: one answer for ``--list-forms``, the
pipeline and ``auto``, from the machine's features and, for forms on a
private kernel route, that route's own check (:mod:`.kernels.guard`)."""
from typing import Dict, Optional

from .forms import FORMS, Form
from .machine import machine

_EXTRAS = dict(onnxruntime='deploy', openvino='openvino')


def _runtime_missing(form: Form) -> Optional[str]:
    """Why the form's runtime packages cannot be imported, if they cannot."""
    modules = dict(
        onnxruntime=['onnxruntime'],
        openvino=['openvino'] +
        (['nncf'] if form.precision == 'int8' else [])).get(form.runtime, [])
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            return (f'{module} is not installed; pip install '
                    f"'mmseg-repvgg[{_EXTRAS[form.runtime]}]'")
    return None


def _kernel_problem(form: Form) -> Optional[str]:
    """Why the form's private kernel route fails its check here, if it
    does (the int8 PyTorch forms; Winograd falls back to direct convs)."""
    if form.precision != 'int8' or form.runtime != 'torch':
        return None
    from .kernels.int8 import why_int8_unavailable
    return why_int8_unavailable()


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
    precision = form.dtype_name(device)
    reason = machine().why_not(precision, device)
    if reason and not (allow_emulated and precision in ('bf16', 'fp16')):
        return reason
    return _runtime_missing(form) or _kernel_problem(form)


def available_forms(device: str = 'cpu',
                    allow_emulated: bool = False) -> Dict[str, Optional[str]]:
    """``{form name: None if it runs here, else why not}`` for every
    shippable form."""
    return {
        name: why_unavailable(form, device, allow_emulated)
        for name, form in FORMS.items()
    }
