"""DeployFormHook: the test loop scores one deploy form of the model."""
from typing import Optional

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from .utils import unwrap_segmentor


@HOOKS.register_module()
class DeployFormHook(Hook):
    """Run the test loop on a deploy form (``tools/test.py --deploy-form``).

    In ``before_test_epoch``, after the checkpoint has loaded (and after
    ``FuseBeforeTestHook`` has fused it, at higher priority), the form is
    made by :func:`~mmseg_repvgg.deploy.deploy_model` (int8 forms
    calibrated on the config's training images through the test pipeline)
    and the segmentor's ``encode_decode`` is pointed at it, so the
    config's evaluator scores the model as shipped.

    Args:
        form (str): A form name, or ``'auto'``.
        calibration_images (int, optional): Training images for
            calibration; None takes the deploy API's default.
        allow_emulated (bool): Accept a precision the hardware emulates.
    """

    priority = 'LOWEST'

    def __init__(self,
                 form: str = 'fused',
                 calibration_images: Optional[int] = None,
                 allow_emulated: bool = False):
        from ...deploy.forms import get_form
        if form != 'auto':
            get_form(form)  # an unknown name fails when the config builds
        self.form = form
        self.calibration_images = calibration_images
        self.allow_emulated = allow_emulated
        self.deployed: Optional[object] = None

    def before_test_epoch(self, runner) -> None:
        from ...deploy.api import deploy_model
        from ...deploy.calibration import calibration_batches
        from ...deploy.deployed import deployed_segmentor
        from ...deploy.forms import needs_calibration
        model = unwrap_segmentor(runner.model).eval()
        calibration = None
        if needs_calibration(self.form):
            count = {} if self.calibration_images is None else dict(
                count=self.calibration_images)
            calibration = calibration_batches(runner.cfg, model, **count)
        self.deployed = deploy_model(
            model,
            self.form,
            calibration,
            device=str(next(model.parameters()).device),
            allow_emulated=self.allow_emulated)
        deployed_segmentor(model, self.deployed, inplace=True)
        notes = '; '.join(self.deployed.notes)
        runner.logger.info(
            f'DeployFormHook: testing the {self.deployed.form.name} form '
            f'({self.deployed.form.label(self.deployed.device)})' +
            (f': {notes}' if notes else ''))
