"""AtomicCheckpointHook: mmengine's CheckpointHook that never loses a save
(mmengine's deletes the oldest first and writes in place)."""
import os.path as osp
from typing import Optional

import mmengine
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.utils import digit_version
from mmseg.registry import HOOKS

from ...atomic_io import ATOMIC_BACKEND_ARGS, atomic_write
from ...checkpoint.digest import add_digest

# Whether mmengine's private _save_checkpoint_with_step is the one followed.
_FOLLOWS_MMENGINE = (
    digit_version('0.10.0') <= digit_version(mmengine.__version__) <
    digit_version('0.11.0'))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) with atomic writes, a crash-safe
    save order and a digest of the tensors.

    Local checkpoints are written atomically: the new one, then
    ``last_checkpoint``, then the one ``max_keep_ckpts`` drops is removed.
    """

    def __init__(self,
                 *args,
                 out_dir: Optional[str] = None,
                 backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None,
                 **kwargs):
        local = out_dir is None or '://' not in str(out_dir)
        if backend_args is None and file_client_args is None and local:
            backend_args = dict(ATOMIC_BACKEND_ARGS)
        super().__init__(
            *args,
            out_dir=out_dir,
            backend_args=backend_args,
            file_client_args=file_client_args,
            **kwargs)
        if not _FOLLOWS_MMENGINE:
            print_log(
                f'AtomicCheckpointHook: mmengine {mmengine.__version__} is '
                'not 0.10.x; checkpoints are written atomically, in '
                "mmengine's order (max_keep_ckpts removes before it saves)",
                logger='current',
                level='WARNING')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        add_digest(checkpoint)

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        """mmengine's, reordered: save, point ``last_checkpoint``, prune."""
        if not _FOLLOWS_MMENGINE:
            return super()._save_checkpoint_with_step(runner, step, meta)
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            # _save_checkpoint and _save_best_checkpoint may both save a step.
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        # Model-parallel strategies save on every rank; bookkeeping: rank 0.
        if not is_main_process():
            return
        atomic_write(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in stale:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves directories
                self.file_backend.rmtree(path)
