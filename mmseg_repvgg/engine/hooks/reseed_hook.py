"""ReseedHook: a resumed training run draws the random numbers of an
uninterrupted one."""
from typing import Optional

import numpy as np
from mmengine.hooks import Hook
from mmengine.runner.utils import set_random_seed
from mmseg.registry import HOOKS

# Tags that keep the epoch and the iteration streams apart.
_EPOCH, _ITER = 0, 1


@HOOKS.register_module()
class ReseedHook(Hook):
    """Reseed python, numpy and torch from (seed, epoch) and (seed, iter).

    mmengine seeds the random generators once, when the Runner starts, and
    does not store their state in checkpoints. After ``--resume`` they
    restart from that first seed instead of where the killed run had got
    to, so dropout masks and (with ``num_workers=0``) the augmentation
    draws differ from an uninterrupted run, and so do the final weights.
    This hook reseeds at the start of every epoch and of every iteration
    from ``runner.seed`` (the config's ``randomness.seed``, saved in every
    checkpoint) and the counter, which makes what follows a function of the
    counter alone: an epoch-based run resumed at a checkpoint then repeats
    the uninterrupted run exactly. The shuffling order needs no help: the
    sampler already seeds from (seed, epoch).

    What it cannot reach: the random state of persistent dataloader workers
    (``persistent_workers=True`` with ``num_workers > 0``), which live on
    across epochs in the uninterrupted run but start afresh after a resume;
    and, in an iteration-based loop with ``num_workers=0``, the
    augmentation of the first batch after the resume point (mmengine skips
    the trained batches before any hook can run). See docs/reliability.md.

    Args:
        reseed_iters (bool): Also reseed before each iteration (dropout in
            an iteration-based loop). Defaults to True.
    """

    # Before any other hook draws a random number in the same stage.
    priority = 'VERY_HIGH'

    def __init__(self, reseed_iters: bool = True):
        self.reseed_iters = reseed_iters

    @staticmethod
    def derived_seed(seed: int, tag: int, count: int) -> int:
        """A 32-bit seed for the ``count``-th epoch or iteration.

        numpy's SeedSequence mixes the three numbers, so neighbouring
        counters (and seeds) give unrelated streams.
        """
        mixed = np.random.SeedSequence([seed % 2**32, tag, count])
        return int(mixed.generate_state(1)[0])

    def _reseed(self, runner, tag: int, count: int) -> None:
        set_random_seed(self.derived_seed(runner.seed, tag, count))

    def before_train_epoch(self, runner) -> None:
        self._reseed(runner, _EPOCH, runner.epoch)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if self.reseed_iters:
            self._reseed(runner, _ITER, runner.iter)
