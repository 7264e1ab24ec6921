"""``form='auto'``: the fastest form that labels held-out calibration pixels
as fp32 does, measured here (it depends on the CPU, model and input size)
and cached, so every process chooses the same."""
import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.fuse import random_inputs
from . import steps
from .cache import read_cache, write_cache
from .forms import FormUnavailable, parse_form, why_unavailable
from .machine import machine
from .timing import label_agreement, median_seconds

#: PyTorch forms that need no export (minutes to prepare); order breaks ties.
AUTO_CANDIDATES = ('winograd_lowres', 'int8_lowres', 'reduced_cl_lowres_graph',
                   'reduced_graph', 'reduced_cl_lowres', 'reduced_lowres',
                   'lowres', 'winograd', 'int8', 'reduced', 'fused')
#: Share of held-out calibration pixels a candidate must label as fp32 does.
AUTO_MIN_AGREEMENT = 0.99
#: Input size timed when neither calibration nor ``input_shape`` give one.
DEFAULT_SHAPE = (1, 3, 512, 1024)
#: Timed calls per candidate, after one warm-up (where Winograd tunes).
REPEATS = 3
CACHE_NAME = 'auto_ranking.json'


@torch.no_grad()
def seconds_per_call(deployed: nn.Module, inputs: Tensor) -> float:
    """Median wall time of :data:`REPEATS` calls after one warm-up."""
    return median_seconds(lambda: deployed(inputs), REPEATS, deployed.device)


def ranking_key(model: nn.Module, shape: Sequence[int], device: str) -> str:
    """Cache key: machine, ``model``'s structure, input shape and device."""
    digest = hashlib.sha1()
    for name, module in model.named_modules():
        digest.update(f'{name}:{type(module).__name__};'.encode())
    for name, tensor in model.state_dict().items():
        digest.update(f'{name}:{tuple(tensor.shape)};'.encode())
    return '|'.join((machine().fingerprint(), digest.hexdigest()[:16],
                     'x'.join(map(str, shape)), str(device)))


def _runnable(calibrate: Sequence[Tensor], device: str) -> Tuple[List, List]:
    """(candidates that run here, notes naming those that do not)."""
    names, notes = [], []
    for name in AUTO_CANDIDATES:
        form = parse_form(name)
        reason = why_unavailable(form, device)
        if reason is None and form.precision == 'int8' and not calibrate:
            reason = 'needs calibration data'
        if reason is None:
            names.append(name)
        else:
            notes.append(f'auto refused {name}: {reason}')
    return names, notes


def _labels_agree(name: str, deployed, reference, check,
                  notes: List[str]) -> bool:
    """Whether ``deployed`` labels ``check`` as fp32 does (noted)."""
    if not check or name == 'fused':
        return True
    agreement = label_agreement(reference, deployed, check)
    text = (f'labels {agreement:.2%} of held-out calibration pixels '
            '(training images) as fp32 does')
    if agreement < AUTO_MIN_AGREEMENT:
        notes.append(f'auto refused {name}: {text} (bound '
                     f'{AUTO_MIN_AGREEMENT:.0%})')
        return False
    notes.append(f'{name}: {text}')
    return True


def auto_deploy(model: nn.Module,
                calibration: Optional[Sequence[Tensor]] = None,
                device: str = 'cpu',
                input_shape: Optional[Sequence[int]] = None):
    """``deploy_model(form='auto')``: int8 calibrates on all but the last
    quarter of ``calibration``, the rest is checked and timed (else an
    ``input_shape`` input); the notes say why. The ranking (of the
    structure) is cached, the label check is not."""
    calibrate = check = list(calibration or [])
    if len(calibrate) >= 2:  # calibrate on the first, check on the rest
        held = max(1, len(calibrate) // 4)
        calibrate, check = calibrate[:-held], calibrate[-held:]
    sample = check[0][:1] if check else random_inputs(
        tuple(input_shape or DEFAULT_SHAPE))
    names, notes = _runnable(calibrate, device)
    fused = steps.build(model, parse_form('fused'), device=device)
    # Keyed by the fused structure: train-time and fused checkpoints share.
    key = ranking_key(fused.segmentor, sample.shape, device)
    cache = read_cache(CACHE_NAME)
    ranked = [name for name in cache.get(key, ()) if name in names]

    def make(name: str):
        try:
            return steps.build(model, parse_form(name), calibrate, device)
        except (FormUnavailable, ConfigError) as err:
            # ConfigError: a kernel's self-check failed in this process.
            notes.append(f'auto refused {name}: {err}')
            return None

    chosen = None
    if ranked:  # measured by an earlier process on this machine
        notes.append('auto: ranking measured earlier on this machine ('
                     f'{", ".join(ranked)})')
        for name in ranked:
            deployed = make(name)
            if deployed is not None and _labels_agree(name, deployed, fused,
                                                      check, notes):
                chosen = deployed
                break
    else:
        measured: Dict[str, float] = {}
        for name in names:
            deployed = make(name)
            if deployed is None:
                continue
            measured[name] = seconds_per_call(deployed, sample)
            agrees = _labels_agree(name, deployed, fused, check, notes)
            if agrees and (chosen is None
                           or measured[name] < measured[chosen.form.name]):
                chosen = deployed
        ranked = sorted(measured, key=measured.get)
        if ranked:
            notes.append('auto measured ' +
                         ', '.join(f'{name} {measured[name] * 1e3:.1f} ms'
                                   for name in ranked) +
                         f' at {tuple(sample.shape)}')
            cache[key] = ranked
            write_cache(CACHE_NAME, cache)
    if chosen is None:
        raise FormUnavailable('no deploy form runs here: ' + '; '.join(notes))
    chosen.notes[:0] = notes + [f'auto chose {chosen.form.name}']
    return chosen
