"""ReparamHook: the reparam hooks as one config entry, as configs name it."""
from typing import List, Sequence

from mmengine.hooks import Hook
from mmengine.utils import is_method_overridden
from mmseg.registry import HOOKS

from .checkpoint_fit_hook import CheckpointFitHook
from .fuse_before_test_hook import FuseBeforeTestHook
from .fused_val_hook import FusedValHook
from .save_deploy_hook import SaveDeployHook

_PARTS = (CheckpointFitHook, FuseBeforeTestHook, FusedValHook, SaveDeployHook)


@HOOKS.register_module()
class ReparamHook(Hook):
    """Fuse a RepVGG segmentor wherever its train-time form is not needed.

    One entry for CheckpointFitHook (always), FuseBeforeTestHook,
    FusedValHook and SaveDeployHook, run in that order.

    Args:
        fuse_before_test (bool): Fuse before testing.
        validate_fused (bool): Validate a fused copy during training.
        save_deploy (bool): Write deploy checkpoints when training ends.
        verify_shape (Sequence[int]): H, W of the deploy checks' input.
    """

    priority = 'BELOW_NORMAL'  # the parts' own: after EMAHook

    def __init__(self,
                 fuse_before_test: bool = True,
                 validate_fused: bool = False,
                 save_deploy: bool = True,
                 verify_shape: Sequence[int] = (128, 256)):
        self.parts: List[Hook] = [CheckpointFitHook()]
        if fuse_before_test:
            self.parts.append(FuseBeforeTestHook())
        if validate_fused:
            self.parts.append(FusedValHook())
        if save_deploy:
            self.parts.append(SaveDeployHook(verify_shape))
        for part in self.parts:
            part.log_prefix = 'ReparamHook'


def _delegate(stage: str):

    def call(self, runner, *args, **kwargs) -> None:
        for part in self.parts:
            getattr(part, stage)(runner, *args, **kwargs)

    call.__name__ = stage
    return call


# Only the stages some part uses, so the Runner's hook table stays true.
for _stage in Hook.stages:
    if any(is_method_overridden(_stage, Hook, part) for part in _PARTS):
        setattr(ReparamHook, _stage, _delegate(_stage))
