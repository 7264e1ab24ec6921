"""FuseBeforeTestHook: the test loop scores the re-parameterized model."""
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...models.fuse import fuse_segmentor
from .utils import fuse_ema_copies, unwrap_segmentor


@HOOKS.register_module()
class FuseBeforeTestHook(Hook):
    """Fuse the segmentor (and an EMA copy) in place before the test epoch,
    as mmyolo's ``SwitchToDeployHook``."""

    priority = 'BELOW_NORMAL'  # after EMAHook
    log_prefix = 'FuseBeforeTestHook'

    def before_test_epoch(self, runner) -> None:
        _, report = fuse_segmentor(
            unwrap_segmentor(runner.model), inplace=True)
        if report.changed:
            fuse_ema_copies(runner)
        runner.logger.info(f'{self.log_prefix}: {report.summary()}')
