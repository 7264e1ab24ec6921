"""How a :class:`~.winograd.WinogradConv2d` picks its algorithm per shape:
measured once, then reused from the machine's cache by every process."""
import functools
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.logging import MMLogger
from torch import Tensor

from ...compare import norm_error
from .. import timing
from ..cache import cache_path, read_cache, write_cache
from ..machine import machine
from .nnpack import TOLERANCE

CACHE_NAME = 'winograd.json'
#: Timed calls per candidate and shape after a warm-up, and their budget.
_REPEATS = 3
_BUDGET_S = 0.06
#: Cache files read once per process (one warning, not one per layer).
_loaded: Dict[str, dict] = {}


def shape_text(shape: Sequence[int]) -> str:
    """``(1, 8, 13, 19)`` -> ``'1x8x13x19'`` (a JSON key)."""
    return 'x'.join(str(int(n)) for n in shape)


def time_candidate(fn: Callable[[Tensor], Tensor],
                   x: Tensor) -> Tuple[float, Tensor]:
    """Median milliseconds of ``fn(x)``, and its output."""
    last: List[Tensor] = []

    def call():
        last[:] = [fn(x)]

    times = timing.time_calls(call, _REPEATS, warmup=1, budget_s=_BUDGET_S)
    return statistics.median(times) * 1000, last[0]


def _mismatch(ref: Tensor, out: Tensor) -> Optional[str]:
    err = norm_error(ref, out)
    return None if err < TOLERANCE else f'relative error {err:.2g}'


def _log_rejected(name: str, shape: Sequence[int], reason: str) -> None:
    MMLogger.get_current_instance().warning(
        f'WinogradConv2d: {name} rejected at input shape {tuple(shape)} '
        f'({reason}); running direct')


def measure(module, x: Tensor) -> Tuple[dict, Tensor]:
    """Time and check every candidate of ``module`` at ``x``'s shape; the
    :attr:`~.WinogradConv2d.choices` entry and the chosen one's output."""
    ms: Dict[str, float] = {}
    rejected: Dict[str, str] = {}
    outs: Dict[str, Tensor] = {}
    for name in module.candidates:
        try:
            if name != 'direct':
                # Made once for all shapes: not part of a call's time.
                module.kernel_transform()
            ms[name], outs[name] = time_candidate(
                functools.partial(module._run, name), x)
        except Exception as error:  # noqa: BLE001
            if name == 'direct':
                raise
            rejected[name] = f'{type(error).__name__}: {error}'
            continue
        if name != 'direct':
            reason = _mismatch(outs['direct'], outs[name])
            if reason:
                rejected[name] = reason
                del ms[name], outs[name]
    for name, reason in rejected.items():
        _log_rejected(name, x.shape, reason)
    choice = min(outs, key=lambda name: ms[name])
    entry = dict(choice=choice, ms=ms)
    if rejected:
        entry['rejected'] = rejected
    return entry, outs[choice]


def adopt(module, x: Tensor, entry: dict, source: str) -> Tuple[dict, Tensor]:
    """Run a choice from ``source`` (e.g. ``'cache'``), checked against
    direct; the :attr:`~.WinogradConv2d.choices` entry and the output."""
    choice = entry['choice']
    entry = dict(choice=choice, ms=dict(entry.get('ms', {})), source=source)
    if choice == 'direct':
        return entry, module._run('direct', x)
    try:
        out = module._run(choice, x)
        ref = module._run('direct', x)
    except Exception as error:  # noqa: BLE001
        reason = f'{type(error).__name__}: {error}'
    else:
        reason = _mismatch(ref, out)
    if reason is None:
        return entry, out
    _log_rejected(choice, x.shape, reason)
    entry.update(choice='direct', rejected={choice: reason})
    return entry, module._run('direct', x)


def _key(module, shape: Sequence[int]) -> str:
    """What, with the machine, decides the pick: geometry, route, shape."""
    return (f'{module.in_channels}>{module.out_channels} g{module.groups} '
            f'd{shape_text(module.dilation)} p{shape_text(module.padding)} '
            f'bias{int(module.bias is not None)} relu{int(module.relu)} '
            f'{module.route}|{shape_text(shape)}')


def _entries() -> dict:
    """This machine's entries in the cache (a dict to update in place)."""
    path = cache_path(CACHE_NAME)
    if path not in _loaded:
        _loaded[path] = read_cache(CACHE_NAME)
    entries = _loaded[path].get(machine().fingerprint())
    if not isinstance(entries, dict):
        entries = _loaded[path][machine().fingerprint()] = {}
    return entries


def lookup(module, shape: Sequence[int]) -> Optional[dict]:
    """The cached entry of ``module`` at ``shape`` here, or None."""
    found = _entries().get(_key(module, shape))
    if isinstance(found, dict) and found.get('choice') in module.candidates:
        return found
    return None


def store(module, shape: Sequence[int], entry: dict) -> None:
    """Add a measured entry to the cache on disk (merged with others')."""
    key = _key(module, shape)
    kept = _entries()[key] = dict(choice=entry['choice'], ms=entry['ms'])
    new = {machine().fingerprint(): {key: kept}}
    _loaded[cache_path(CACHE_NAME)] = write_cache(CACHE_NAME, new)
