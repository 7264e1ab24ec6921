"""``deploy_model``: the one entry to every deploy form, ``'auto'``
included (a client of the pipeline, like the benchmark)."""
from typing import Optional, Sequence, Union

from torch import Tensor, nn

from . import pipeline
from .auto import auto_deploy
from .deployed import DeployedModel
from .forms import Form, get_form


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
    if isinstance(form, str) and form == 'auto':
        return auto_deploy(model, calibration, device, input_shape)
    spec = form if isinstance(form, Form) else get_form(form)
    return pipeline.build(model, spec, calibration, device, allow_emulated,
                          input_shape, workdir)
