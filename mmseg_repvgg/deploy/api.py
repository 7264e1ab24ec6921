"""The deploy entries: :func:`deploy_model` (one form of a model) and
:func:`deploy_segmentors` (the calibrate-deploy-wrap recipe)."""
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
    """Make one deploy form of a segmentor; ConfigError for a spec that is
    not a form, FormUnavailable (saying why) for one that cannot run here.

    Args:
        model (nn.Module): Train-time or fused, eval mode, CPU (unchanged).
        form (str | Form): A spec (:func:`~.forms.parse_form`) or ``'auto'``.
        calibration (Sequence[Tensor], optional): Batches for int8 forms.
        device (str): Where the form runs.
        allow_emulated (bool): Run a reduced precision that is emulated.
        input_shape (Sequence[int], optional): N, C, H, W to prepare now.
        workdir (str, optional): Where runtimes write their model files.

    Returns:
        DeployedModel: ``inputs -> logits``, with ``.form`` and ``.notes``.
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
    """Each form of ``model`` inside its segmentor (for mmseg's inference,
    test loop and evaluator), calibrated on the config's first
    ``calibration_images`` training images (0: ``'auto'`` among floats).

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
