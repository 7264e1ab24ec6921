"""Timing and agreement: how auto, Winograd tuning and the benchmark
measure a call and compare two models' labels, written once."""
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..compare import agreeing_labels


def synchronizer(device: str) -> Callable[[], None]:
    """What makes a timer wait for the device: CUDA runs asynchronously."""
    if str(device).startswith('cuda'):
        return torch.cuda.synchronize
    return lambda: None


def time_calls(fn: Callable[[], object],
               runs: int,
               sync: Optional[Callable[[], None]] = None,
               warmup: int = 0,
               budget_s: Optional[float] = None) -> List[float]:
    """Wall seconds of ``runs`` synchronized calls of ``fn`` after ``warmup``
    ones, fewer (at least one) once ``budget_s`` has passed."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < runs:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if budget_s is not None and t1 - start >= budget_s:
            break
    return times


def median_seconds(fn: Callable[[], object],
                   runs: int,
                   device: str = 'cpu',
                   warmup: int = 1) -> float:
    """Median wall seconds of ``runs`` calls after ``warmup``."""
    return statistics.median(
        time_calls(fn, runs, synchronizer(device), warmup=warmup))


def summarize(seconds: List[float]) -> Optional[Dict[str, float]]:
    """Median, min and max in milliseconds (None for no runs)."""
    if not seconds:
        return None
    ms = [1000.0 * s for s in seconds]
    return dict(
        median=statistics.median(ms),
        min=min(ms),
        max=max(ms),
        runs=[round(v, 3) for v in ms])


@torch.no_grad()
def label_agreement(reference: nn.Module, candidate: nn.Module,
                    batches: Sequence[Tensor]) -> float:
    """Share of pixels ``candidate`` labels as ``reference`` does."""
    same = total = 0
    for batch in batches:
        agree, count = agreeing_labels(reference(batch), candidate(batch))
        same, total = same + agree, total + count
    return same / max(total, 1)
