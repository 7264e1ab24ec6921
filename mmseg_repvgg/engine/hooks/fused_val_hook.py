"""FusedValHook: validate a fused copy during training, training untouched."""
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...models.fuse import fuse_segmentor
from .utils import unwrap_segmentor


@HOOKS.register_module()
class FusedValHook(Hook):
    """Each validation epoch scores a fused copy of the (EMA) model;
    training goes on exactly as without it."""

    priority = 'BELOW_NORMAL'  # after EMAHook swapped its weights in
    log_prefix = 'FusedValHook'

    def before_val_epoch(self, runner) -> None:
        # New convs' init must not draw from training's random numbers.
        devices = [torch.cuda.current_device()
                   ] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            fused, report = fuse_segmentor(unwrap_segmentor(runner.model))
        fused.eval()
        # Shadowing the one method ValLoop calls keeps every other hook
        # (checkpoints, EMA) on the training model.
        runner.model.val_step = fused.val_step
        runner.logger.info(f'{self.log_prefix}: validating a fused copy '
                           f'({report.summary()})')

    def after_val_epoch(self, runner, metrics: Optional[Dict] = None) -> None:
        # Drops the instance attribute; the class method shows through again.
        vars(runner.model).pop('val_step', None)

    def after_val(self, runner) -> None:
        vars(runner.model).pop('val_step', None)
