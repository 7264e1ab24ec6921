"""The deploy entries: :func:`deploy_model` (one form of a model) and
:func:`deploy_segmentors` (calibrate, deploy, put back into the segmentor:
the recipe of the test loop, the inferencer and the benchmark)."""
from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from . import steps
from .auto import auto_deploy
from .calibration import CALIBRATION_IMAGES, calibration_batches
from .deployed import DeployedModel, deployed_segmentor
from .forms import AUTO, Form, check_form, needs_calibration


def deploy_model(model: nn.Module,
                 form: Union[str, Form] = AUTO,
                 calibration: Optional[Sequence[Tensor]] = None,
                 device: str = 'cpu',
                 allow_emulated: bool = False,
                 input_shape: Optional[Sequence[int]] = None,
                 workdir: Optional[str] = None) -> DeployedModel:
    """Make one deploy form of a segmentor.

    Args:
        model (nn.Module): The segmentor (train-time or fused, eval mode,
            on the CPU); left unchanged.
        form (str | Form): A form spec (:func:`~.forms.parse_form`) or
            ``'auto'`` (:mod:`.auto`).
        calibration (Sequence[Tensor], optional): Normalized fp32 batches
            (:func:`~.calibration.calibration_batches`) for the int8 forms.
        device (str): Where the form runs.
        allow_emulated (bool): Run a reduced float precision the hardware
            only emulates.
        input_shape (Sequence[int], optional): N, C, H, W the runtime forms
            prepare for now (else on first use of each shape).
        workdir (str, optional): Where runtime forms write their model
            files (a temporary folder by default).

    Returns:
        DeployedModel: ``forward(inputs) -> logits``; ``.form`` is the
        form made, ``.notes`` what was decided.

    Raises:
        ConfigError: The spec is not a form.
        FormUnavailable: The form cannot run here (the message says why).
    """
    if form == AUTO:
        return auto_deploy(model, calibration, device, input_shape)
    return steps.build(model, check_form(form, device, allow_emulated),
                       calibration, device, input_shape, workdir)


def deploy_segmentors(
        cfg,
        model: nn.Module,
        forms: Sequence[Union[str, Form]],
        calibration_images: int = CALIBRATION_IMAGES,
        device: str = 'cpu',
        allow_emulated: bool = False) -> List[Tuple[DeployedModel, nn.Module]]:
    """Each form of ``model`` inside its segmentor, for mmseg's inference,
    test loop and evaluator. The int8 forms and ``'auto'`` calibrate on the
    config's first ``calibration_images`` training images (read once; with
    0, ``'auto'`` chooses among the float forms).

    Returns:
        list[tuple]: ``(deployed, segmentor)`` per form, in order.
    """
    calibration = None
    if calibration_images and any(needs_calibration(f) for f in forms):
        calibration = calibration_batches(cfg, model, calibration_images)
    made = []
    for form in forms:
        deployed = deploy_model(model, form, calibration, device,
                                allow_emulated)
        made.append((deployed, deployed_segmentor(model, deployed)))
    return made
