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

    mmengine seeds once and stores no generator state, so a resumed run
    would draw other random numbers than an uninterrupted one; this makes
    it repeat that run (but for persistent workers; docs/reliability.md).

    Args:
        reseed_iters (bool): Also reseed before each iteration.
    """

    priority = 'VERY_HIGH'  # before any other hook draws in the same stage

    def __init__(self, reseed_iters: bool = True):
        self.reseed_iters = reseed_iters

    @staticmethod
    def derived_seed(seed: int, tag: int, count: int) -> int:
        """A 32-bit seed for the ``count``-th epoch or iteration; neighbouring
        counters give unrelated streams (numpy's SeedSequence)."""
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
