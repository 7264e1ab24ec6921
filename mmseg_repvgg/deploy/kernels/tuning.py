"""How a :class:`~.winograd.WinogradConv2d` picks its algorithm per shape,
and where the picks are kept: measured once, then reused from an on-disk
cache keyed by the machine, the layer's geometry and the input shape, so
that later processes time nothing and run the same kernels. A reused pick
is checked once against direct at its first use.
"""
import functools
import logging
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmengine.logging import print_log
from torch import Tensor

from ...compare import norm_error
from .. import timing
from ..cache import cache_path, read_cache, write_cache
from ..machine import machine
from .nnpack import TOLERANCE

#: The on-disk cache's file name (see :mod:`mmseg_repvgg.deploy.cache`).
CACHE_NAME = 'winograd.json'

#: Time spent timing one candidate at one shape: calls are repeated until
#: ``_REPEATS`` timed calls (after one warm-up) or this budget is reached.
_BUDGET_S = 0.06
_REPEATS = 3


def shape_text(shape: Sequence[int]) -> str:
    """An input shape as a JSON key: ``(1, 8, 13, 19)`` -> ``'1x8x13x19'``.
    """
    return 'x'.join(str(int(n)) for n in shape)


def time_candidate(fn: Callable[[Tensor], Tensor],
                   x: Tensor) -> Tuple[float, Tensor]:
    """Median milliseconds of ``fn(x)`` and its output.

    One warm-up call (oneDNN creates its primitive and NNPACK its
    workspace then), then up to ``_REPEATS`` timed calls within
    ``_BUDGET_S``, so measuring a slow layer costs about two calls.
    """
    last: List[Tensor] = []

    def call():
        last[:] = [fn(x)]

    times = timing.time_calls(call, _REPEATS, warmup=1, budget_s=_BUDGET_S)
    return statistics.median(times) * 1000, last[0]


def _log_rejected(name: str, shape: Sequence[int], reason: str) -> None:
    print_log(
        f'WinogradConv2d: {name} rejected at input shape {tuple(shape)} '
        f'({reason}); running direct',
        logger='current',
        level=logging.WARNING)


def measure(module, x: Tensor) -> Tuple[dict, Tensor]:
    """Time and check every candidate of ``module`` at ``x``'s shape.

    Args:
        module (WinogradConv2d): The conv.
        x (Tensor): Its input.

    Returns:
        tuple[dict, Tensor]: The :attr:`~.WinogradConv2d.choices` entry
        (``choice``, ``ms`` per candidate, ``rejected`` where one failed)
        and the output of the chosen candidate.
    """
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
            err = norm_error(outs['direct'], outs[name])
            if not err < TOLERANCE:
                rejected[name] = f'relative error {err:.2g}'
                del ms[name], outs[name]
    for name, reason in rejected.items():
        _log_rejected(name, x.shape, reason)
    choice = min(outs, key=lambda name: ms[name])
    entry = dict(choice=choice, ms=ms)
    if rejected:
        entry['rejected'] = rejected
    return entry, outs[choice]


def adopt(module, x: Tensor, entry: dict, source: str) -> Tuple[dict, Tensor]:
    """Run a choice made elsewhere, checked once against direct.

    Args:
        module (WinogradConv2d): The conv.
        x (Tensor): Its input.
        entry (dict): ``choice`` and optionally ``ms`` (as measured then).
        source (str): Where it came from, kept in the entry (``'cache'``).

    Returns:
        tuple[dict, Tensor]: The :attr:`~.WinogradConv2d.choices` entry
        and the output.
    """
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
        err = norm_error(ref, out)
        if err < TOLERANCE:
            return entry, out
        reason = f'relative error {err:.2g}'
    _log_rejected(choice, x.shape, reason)
    entry.update(choice='direct', rejected={choice: reason})
    return entry, module._run('direct', x)


def _layer_key(module) -> str:
    """What, besides the machine and the input shape, decides the pick."""
    return (f'{module.in_channels}>{module.out_channels} g{module.groups} '
            f'd{shape_text(module.dilation)} p{shape_text(module.padding)} '
            f'bias{int(module.bias is not None)} relu{int(module.relu)} '
            f'{module.route}')


#: Cache contents per file, read once per process: layers are looked up
#: one by one, and an unreadable file must log one line, not one per layer.
_loaded: Dict[str, dict] = {}


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
    """The cached entry (``choice``, ``ms``) of ``module`` at ``shape`` on
    this machine, or None."""
    found = _entries().get(f'{_layer_key(module)}|{shape_text(shape)}')
    if isinstance(found, dict) and found.get('choice') in module.candidates:
        return found
    return None


def store(module, shape: Sequence[int], entry: dict) -> None:
    """Add a measured entry to the cache on disk (merged with what other
    processes wrote meanwhile, which this process then sees too)."""
    key = f'{_layer_key(module)}|{shape_text(shape)}'
    kept = _entries()[key] = dict(choice=entry['choice'], ms=entry['ms'])
    new = {machine().fingerprint(): {key: kept}}
    _loaded[cache_path(CACHE_NAME)] = write_cache(CACHE_NAME, new)
