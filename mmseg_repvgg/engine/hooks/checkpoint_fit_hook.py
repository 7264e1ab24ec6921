"""CheckpointFitHook: whatever Runner loads a checkpoint, it must fit."""
from typing import Dict

from mmengine.hooks import Hook
from mmengine.optim import BaseOptimWrapper
from mmseg.registry import HOOKS

from ...checkpoint import (check_checkpoint_fits, checkpoint_state_dict,
                           is_deploy_checkpoint)
from .utils import fuse_ema_copies, unwrap_segmentor


def load_purpose(runner) -> str:
    """What the Runner loads the checkpoint for (mmengine does not say):
    only training builds its optimizer wrapper before it loads."""
    if not isinstance(runner.optim_wrapper, BaseOptimWrapper):
        return 'test'
    return 'resume' if runner.cfg.get('resume') else 'load_from'


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Apply :func:`~mmseg_repvgg.checkpoint.check_checkpoint_fits` when any
    Runner (mmseg's tools too) loads a checkpoint: a fused one shapes a
    train-time model to it for testing; one that does not fit raises."""

    priority = 'BELOW_NORMAL'  # after EMAHook copied the weights it loads
    log_prefix = 'CheckpointFitHook'

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        purpose = load_purpose(runner)
        source = runner.cfg.get('load_from') or 'the checkpoint'
        model = unwrap_segmentor(runner.model)
        report = check_checkpoint_fits(
            model, checkpoint, source, purpose, reshape=purpose == 'test')
        if purpose == 'load_from' and 'optimizer' in checkpoint:
            # mmseg's train.py overwrites cfg.resume with its --resume flag,
            # so `--cfg-options resume=True load_from=...` restarts at 0.
            meta = checkpoint.get('meta') or {}
            runner.logger.warning(
                f'{self.log_prefix}: {source} is a training checkpoint (iter '
                f'{meta.get("iter", "?")}, optimizer state) loaded as '
                'load_from, so training starts again at iteration 0. To '
                "continue that run instead, pass --resume (with mmseg's "
                'train.py: --resume --cfg-options load_from=safe://PATH)')
        if report is not None:
            kind = ('deploy checkpoint' if is_deploy_checkpoint(checkpoint)
                    else 'fused-backbone checkpoint')
            fuse_ema_copies(runner, checkpoint_state_dict(checkpoint))
            runner.logger.info(f'{self.log_prefix}: {kind}, model shaped to '
                               f'it: {report.summary()}')
