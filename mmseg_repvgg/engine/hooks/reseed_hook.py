"""ReseedHook: a resumed run draws an uninterrupted run's random numbers."""
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
        """A 32-bit seed of an epoch or iteration, unlike its neighbours'."""
        mixed = np.random.SeedSequence([seed % 2**32, tag, count])
        return int(mixed.generate_state(1)[0])

    def before_train_epoch(self, runner) -> None:
        set_random_seed(self.derived_seed(runner.seed, _EPOCH, runner.epoch))

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if self.reseed_iters:
            set_random_seed(self.derived_seed(runner.seed, _ITER, runner.iter))
