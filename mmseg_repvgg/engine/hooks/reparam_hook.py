"""ReparamHook: test, validate and ship RepVGG segmentors in fused form."""
import copy
import os.path as osp
from typing import Dict, Optional, Sequence

import torch
from mmengine.dist import master_only
from mmengine.hooks import EMAHook, Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import BaseLoop, weights_to_cpu
from mmseg.registry import HOOKS
from torch import nn

from ...checkpoint import (check_checkpoint_fits, checkpoint_state_dict,
                           is_deploy_checkpoint, safe_torch_load)
from ...errors import CheckpointError
from ...models.fuse import fuse_segmentor


def unwrap_segmentor(model: nn.Module) -> nn.Module:
    """The segmentor inside a DDP-style wrapper or a TTA model."""
    if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        return model.module
    return model


@HOOKS.register_module()
class ReparamHook(Hook):
    """Fuse a RepVGG segmentor where its train-time form is not needed.

    In the mould of mmyolo's ``SwitchToDeployHook``:

    * Test: in ``before_test_epoch`` (the checkpoint has loaded) the model
      is fused in place, so the test metrics are the deployed model's.
    * Validation during training (``validate_fused``): each val epoch runs
      a fused deep copy; the training weights, BN statistics, optimizer
      state and RNG are not touched, so training continues exactly.
    * End of training (``save_deploy``): deploy checkpoints of the final
      weights and of each best checkpoint go to the work dir, each with its
      deploy config beside it (``deploy_final.pth`` / ``deploy_final.py``,
      ``deploy_best_<metric>_iter_<n>.pth``), made by
      :func:`~mmseg_repvgg.deploy.artifacts.save_verified_deploy` as
      ``tools/reparam.py`` makes them: fused == unfused, or nothing written.
    * Loading: whatever Runner loads a checkpoint (ours, mmseg's own
      ``tools/test.py`` and ``train.py``), the checkpoint must fit the
      model by :func:`~mmseg_repvgg.checkpoint.check_checkpoint_fits`, the
      rule our tools apply before the Runner: a fused checkpoint (deploy,
      or a fused backbone) shapes a train-time model to it for testing; a
      train-time checkpoint given to a deploy config, a deploy checkpoint
      given to training, or one of another arch stops the run with one
      line naming the fix (``SystemExit``), where mmengine's non-strict
      loading would only warn and score random weights.

    With mmengine's ``EMAHook`` (which swaps its averaged weights into the
    model for validation and test, at priority NORMAL): this hook runs
    after it (BELOW_NORMAL), so it fuses the EMA weights, and it fuses the
    EMA's own copy alike, so the swap back after the test exchanges
    tensors of the same shapes. The final deploy checkpoint holds the
    weights a checkpoint saved then would hold (the EMA weights with
    EMAHook).

    Args:
        fuse_before_test (bool): Fuse before testing. Defaults to True.
        validate_fused (bool): Validate a fused copy during training.
            Defaults to False.
        save_deploy (bool): Write deploy checkpoints when training ends.
            Defaults to True.
        verify_shape (Sequence[int]): H, W of the random input on which
            each deploy checkpoint's fused logits must equal the unfused
            ones. Defaults to (128, 256).
    """

    # After EMAHook (NORMAL), before DeployFormHook (LOWEST).
    priority = 'BELOW_NORMAL'

    def __init__(self,
                 fuse_before_test: bool = True,
                 validate_fused: bool = False,
                 save_deploy: bool = True,
                 verify_shape: Sequence[int] = (128, 256)):
        self.fuse_before_test = fuse_before_test
        self.validate_fused = validate_fused
        self.save_deploy = save_deploy
        self.verify_shape = tuple(verify_shape)

    @staticmethod
    def _ema_hooks(runner):
        return [hook for hook in runner.hooks if isinstance(hook, EMAHook)]

    def _fuse_ema_copies(self, runner, state_dict=None) -> None:
        """Fuse the averaged model of each EMAHook as the model was fused.

        EMAHook swaps parameters one by one with the model's; a fused model
        and a train-time average would not line up. ``state_dict`` (a
        fused checkpoint's weights) is loaded into the fused averages.
        """
        for hook in self._ema_hooks(runner):
            average = getattr(hook, 'ema_model', None)
            if average is None:  # built in before_run; nothing to swap yet
                continue
            fuse_segmentor(average.module, inplace=True)
            if state_dict is not None:
                average.module.load_state_dict(state_dict, strict=True)

    @staticmethod
    def _load_purpose(runner) -> str:
        """What the Runner loads the checkpoint for: test, resume, load_from.

        mmengine tells hooks neither; ``Runner.train`` builds its train loop
        before loading and ``test``/``val`` never do, and ``_resume`` is
        the flag ``load_or_resume`` itself reads (mmengine 0.10.x).
        """
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return 'test'
        return 'resume' if getattr(runner, '_resume', False) else 'load_from'

    def after_load_checkpoint(self, runner, checkpoint: Dict) -> None:
        """Check the checkpoint against the model, shaping it if fused."""
        model = unwrap_segmentor(runner.model)
        purpose = self._load_purpose(runner)
        source = runner.cfg.get('load_from') or 'the checkpoint'
        try:
            report = check_checkpoint_fits(
                model, checkpoint, source, purpose, reshape=purpose == 'test')
        except CheckpointError as err:
            # The Runner (ours or mmseg's tools) cannot go on with weights
            # that do not fit, and a stock tool would bury the reason under
            # a traceback: one line and a non-zero exit.
            raise SystemExit(f'error: {err}') from None
        if purpose == 'load_from' and 'optimizer' in checkpoint:
            # mmseg's train.py overwrites cfg.resume with its --resume flag,
            # so `--cfg-options resume=True load_from=...` lands here and
            # silently restarts at iteration 0.
            meta = checkpoint.get('meta') or {}
            runner.logger.warning(
                f'ReparamHook: {source} is a training checkpoint (iter '
                f'{meta.get("iter", "?")}, optimizer state) loaded as '
                'load_from, so training starts again at iteration 0. To '
                'continue that run instead, pass --resume (with mmseg\'s '
                'train.py: --resume --cfg-options load_from=safe://PATH)')
        if report is not None:
            kind = ('deploy checkpoint' if is_deploy_checkpoint(checkpoint)
                    else 'fused-backbone checkpoint')
            self._fuse_ema_copies(runner, checkpoint_state_dict(checkpoint))
            runner.logger.info(f'ReparamHook: {kind}, model shaped to it: '
                               f'{report.summary()}')

    def before_test_epoch(self, runner) -> None:
        """Fuse the loaded model (EMA weights swapped in) in place."""
        if not self.fuse_before_test:
            return
        _, report = fuse_segmentor(
            unwrap_segmentor(runner.model), inplace=True)
        if report.changed:
            self._fuse_ema_copies(runner)
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
            fused, report = fuse_segmentor(unwrap_segmentor(runner.model))
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

    @staticmethod
    def _final_weights(runner) -> Dict:
        """The state dict a checkpoint saved now would hold.

        ``before_save_checkpoint`` is where EMAHook puts its averaged weights
        into a checkpoint's ``state_dict``; the model's own tensors are not
        touched (the dict's values are swapped, not the parameters).
        """
        checkpoint = dict(
            state_dict=weights_to_cpu(
                unwrap_segmentor(runner.model).state_dict()))
        runner.call_hook('before_save_checkpoint', checkpoint=checkpoint)
        return checkpoint_state_dict(checkpoint)

    @master_only
    def after_train(self, runner) -> None:
        """Write verified deploy checkpoints of the final and best weights."""
        if not self.save_deploy:
            return
        model = unwrap_segmentor(runner.model)
        cfg = runner.cfg if runner.cfg.get('model') else None
        dataset = getattr(runner.train_dataloader, 'dataset', None)
        source_meta = dict(
            dataset_meta=getattr(dataset, 'metainfo', None),
            epoch=runner.epoch,
            iter=runner.iter,
            seed=runner.seed,
            experiment_name=runner.experiment_name)
        sources = [('deploy_final.pth', f'final weights of {runner.work_dir}',
                    self._final_weights(runner), source_meta)]
        for key, path in runner.message_hub.runtime_info.items():
            if key.startswith('best_ckpt') and path and osp.isfile(path):
                best = safe_torch_load(path)
                sources.append((f'deploy_{osp.basename(path)}', path,
                                checkpoint_state_dict(best), best.get('meta')))
        # Deploy code loads only here, when there is something to ship.
        from ...deploy.artifacts import save_verified_deploy
        for filename, source, state_dict, meta in sources:
            weights = copy.deepcopy(model)
            weights.load_state_dict(state_dict)
            out = osp.join(runner.work_dir, filename)
            result = save_verified_deploy(weights, cfg, out, source, meta,
                                          (1, 3, *self.verify_shape))
            beside = f' (config {result.config})' if result.config else ''
            runner.logger.info(
                f'ReparamHook: deploy checkpoint {out}{beside}: '
                f'{result.report.summary()}; fused logits equal the '
                f'unfused ones to {result.rel:.2g} of the largest')
