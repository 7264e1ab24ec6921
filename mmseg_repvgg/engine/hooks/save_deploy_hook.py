"""SaveDeployHook: deploy checkpoints of the final and best weights."""
import copy
import os.path as osp
from typing import Dict, List, Sequence, Tuple

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.runner import weights_to_cpu
from mmseg.registry import HOOKS

from ...checkpoint import checkpoint_state_dict, safe_torch_load
from .utils import unwrap_segmentor


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
