"""ReparamHook: test, validate and ship RepVGG segmentors in fused form."""
import copy
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmseg.registry import HOOKS
from torch import nn

from ...compat import safe_torch_load
from ...deploy import (check_state_dict_matches, checkpoint_state_dict,
                       deploy_meta, fuse_segmentor, is_deploy_checkpoint,
                       save_deploy_checkpoint)
from ...errors import CheckpointError


def _unwrap(model: nn.Module) -> nn.Module:
    """The segmentor inside a DDP-style wrapper or a TTA model."""
    if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        return model.module
    return model


@HOOKS.register_module()
class ReparamHook(Hook):
    """Fuse a RepVGG segmentor where its train-time form is not needed.

    * Test: in ``before_test_epoch`` (the checkpoint has loaded) the model
      is fused in place, so the test metrics are the deployed model's.
    * Validation during training (``validate_fused``): each val epoch runs
      a fused deep copy; the training weights, BN statistics, optimizer
      state and RNG are not touched, so training continues exactly.
    * End of training (``save_deploy``): deploy checkpoints of the final
      weights and of each best checkpoint go to the work dir, each with its
      deploy config beside it (``deploy_final.pth`` / ``deploy_final.py``,
      ``deploy_best_<metric>_iter_<n>.pth``).
    * Loading a deploy checkpoint into a train-time model (the training
      config) shapes the model to it first and checks every key.

    Args:
        fuse_before_test (bool): Fuse before testing. Defaults to True.
        validate_fused (bool): Validate a fused copy during training.
            Defaults to False.
        save_deploy (bool): Write deploy checkpoints when training ends.
            Defaults to True.
    """

    priority = 'NORMAL'

    def __init__(self,
                 fuse_before_test: bool = True,
                 validate_fused: bool = False,
                 save_deploy: bool = True):
        self.fuse_before_test = fuse_before_test
        self.validate_fused = validate_fused
        self.save_deploy = save_deploy
        self._fused_on_load = False

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        """Fuse the model before a deploy checkpoint is loaded into it."""
        if not is_deploy_checkpoint(checkpoint):
            return
        model = _unwrap(runner.model)
        _, report = fuse_segmentor(model, inplace=True)
        self._fused_on_load = report.changed
        # The Runner loads non-strictly; a mismatch must not pass silently.
        check_state_dict_matches(model, checkpoint_state_dict(checkpoint),
                                 'the deploy checkpoint')
        if report.changed:
            runner.logger.info('ReparamHook: deploy checkpoint, model shaped '
                               f'to it: {report.summary()}')

    def before_train(self, runner) -> None:
        if self._fused_on_load:
            raise CheckpointError(
                'cannot train from a deploy checkpoint: its BatchNorms are '
                'folded and its branches fused; load or resume the '
                'train-time checkpoint instead')

    def before_test_epoch(self, runner) -> None:
        """Fuse the loaded model in place."""
        if not self.fuse_before_test:
            return
        _, report = fuse_segmentor(_unwrap(runner.model), inplace=True)
        runner.logger.info(f'ReparamHook: {report.summary()}')

    def before_val_epoch(self, runner) -> None:
        """Let the val loop run a fused copy of the model."""
        if not self.validate_fused:
            return
        # Fusion builds new convs whose default init draws from torch's
        # global RNG; training must go on with the random numbers it would
        # have had without fused validation.
        devices = [torch.cuda.current_device()
                   ] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            fused, report = fuse_segmentor(_unwrap(runner.model))
        fused.eval()
        # ValLoop calls ``runner.model.val_step`` for every batch. Shadowing
        # that one method (not swapping runner.model) keeps every other hook
        # (checkpoints, EMA) on the training model.
        runner.model.val_step = fused.val_step
        runner.logger.info(
            f'ReparamHook: validating a fused copy ({report.summary()})')

    def after_val_epoch(self, runner, metrics: Optional[Dict] = None) -> None:
        self._restore_val_step(runner)

    def after_val(self, runner) -> None:
        self._restore_val_step(runner)

    @staticmethod
    def _restore_val_step(runner) -> None:
        # Drops the instance attribute; the class method shows through again.
        vars(runner.model).pop('val_step', None)

    @master_only
    def after_train(self, runner) -> None:
        """Write deploy checkpoints of the final and best weights."""
        if not self.save_deploy:
            return
        model = _unwrap(runner.model)
        cfg = runner.cfg if runner.cfg.get('model') else None
        dataset = getattr(runner.train_dataloader, 'dataset', None)
        source_meta = dict(
            dataset_meta=getattr(dataset, 'metainfo', None),
            epoch=runner.epoch,
            iter=runner.iter,
            seed=runner.seed,
            experiment_name=runner.experiment_name)
        self._save(runner, model, cfg, 'deploy_final.pth',
                   f'final weights of {runner.work_dir}', source_meta)
        for key, path in runner.message_hub.runtime_info.items():
            if key.startswith('best_ckpt') and path and osp.isfile(path):
                best = safe_torch_load(path)
                weights = copy.deepcopy(model)
                weights.load_state_dict(checkpoint_state_dict(best))
                self._save(runner, weights, cfg,
                           f'deploy_{osp.basename(path)}', path,
                           best.get('meta'))

    @staticmethod
    def _save(runner, model, cfg, filename, source, source_meta) -> None:
        fused, report = fuse_segmentor(model)
        out = osp.join(runner.work_dir, filename)
        _, cfg_path = save_deploy_checkpoint(
            fused, cfg, out, deploy_meta(report, source, source_meta))
        beside = f' (config {cfg_path})' if cfg_path else ''
        runner.logger.info(f'ReparamHook: deploy checkpoint {out}{beside}: '
                           f'{report.summary()}')
