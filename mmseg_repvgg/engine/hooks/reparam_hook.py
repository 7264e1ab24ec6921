"""The hooks that use a RepVGG segmentor's deploy form where its train-time
form is not needed, and ReparamHook, which runs them and CheckpointFitHook
as one config entry, as configs name it."""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.runner import weights_to_cpu
from mmengine.utils import is_method_overridden
from mmseg.registry import HOOKS

from ...checkpoint import checkpoint_state_dict, safe_torch_load
from ...models.fuse import fuse_segmentor
from .checkpoint_fit_hook import CheckpointFitHook
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


@HOOKS.register_module()
class SaveDeployHook(Hook):
    """When training ends, write ``deploy_final.pth`` (EMA weights with
    ``EMAHook``) and one per best checkpoint to the work dir, each with its
    config, as ``tools/reparam.py`` does (verified, or nothing written).

    Args:
        verify_shape (Sequence[int]): H, W of the fused = unfused check.
    """

    priority = 'BELOW_NORMAL'
    log_prefix = 'SaveDeployHook'

    def __init__(self, verify_shape: Sequence[int] = (128, 256)):
        self.verify_shape = tuple(verify_shape)

    def _sources(self, runner) -> List[Tuple[str, str, Dict, Dict]]:
        """(file name, source, state dict, meta) of each deploy checkpoint."""
        dataset = getattr(runner.train_dataloader, 'dataset', None)
        final_meta = dict(
            dataset_meta=getattr(dataset, 'metainfo', None),
            epoch=runner.epoch,
            iter=runner.iter,
            seed=runner.seed,
            experiment_name=runner.experiment_name)
        # What a checkpoint saved now would hold: EMAHook swaps its averages
        # in at before_save_checkpoint.
        final = dict(
            state_dict=weights_to_cpu(
                unwrap_segmentor(runner.model).state_dict()))
        runner.call_hook('before_save_checkpoint', checkpoint=final)
        sources = [('deploy_final.pth', f'final weights of {runner.work_dir}',
                    checkpoint_state_dict(final), final_meta)]
        for key, path in runner.message_hub.runtime_info.items():
            if key.startswith('best_ckpt') and path and osp.isfile(path):
                best = safe_torch_load(path)
                sources.append((f'deploy_{osp.basename(path)}', path,
                                checkpoint_state_dict(best), best.get('meta')))
        return sources

    @master_only
    def after_train(self, runner) -> None:
        # The deploy wing loads only here, when there is something to ship.
        from ...deploy.artifacts import save_verified_deploy
        model = unwrap_segmentor(runner.model)
        cfg = runner.cfg if runner.cfg.get('model') else None
        for filename, source, state_dict, meta in self._sources(runner):
            weights = copy.deepcopy(model)
            weights.load_state_dict(state_dict)
            out = osp.join(runner.work_dir, filename)
            result = save_verified_deploy(weights, cfg, out, source, meta,
                                          (1, 3, *self.verify_shape))
            beside = f' (config {result.config})' if result.config else ''
            runner.logger.info(
                f'{self.log_prefix}: deploy checkpoint {out}{beside}: '
                f'{result.report.summary()}; fused logits equal the '
                f'unfused ones to {result.rel:.2g} of the largest')


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
