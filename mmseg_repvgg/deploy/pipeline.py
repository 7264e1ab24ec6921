"""The deploy pipeline: one form of a segmentor, made step by step
(:mod:`.steps`: structure -> precision -> kernels -> runtime)."""
from typing import List, Optional, Sequence

from torch import Tensor, nn

from . import steps
from .availability import why_unavailable
from .deployed import DeployedModel
from .forms import Form, FormUnavailable


def build(model: nn.Module,
          form: Form,
          calibration: Optional[Sequence[Tensor]] = None,
          device: str = 'cpu',
          allow_emulated: bool = False,
          input_shape: Optional[Sequence[int]] = None,
          workdir: Optional[str] = None) -> DeployedModel:
    """Make ``form`` of ``model`` (left unchanged); see
    :func:`~mmseg_repvgg.deploy.deploy_model` for the arguments.

    Raises:
        FormUnavailable: The form cannot run here (the message says why).
    """
    reason = why_unavailable(form, device, allow_emulated)
    if reason:
        raise FormUnavailable(f'{form.name}: {reason}')
    if form.runtime in ('onnxruntime', 'openvino'):
        return steps.backend_runtime(form, model, device, calibration,
                                     input_shape, workdir)
    notes: List[str] = []
    changes = (
        str(device) != 'cpu' or form.precision != 'fp32' or form.channels_last
        or form.winograd)
    module = steps.structure(form, model, copy_model=changes)
    module = steps.precision(form, module, device, calibration, notes)
    module = steps.kernels(form, module, notes)
    return steps.torch_runtime(form, module, device, notes)
