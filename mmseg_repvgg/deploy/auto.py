"""``form='auto'``: the fastest form this machine runs, measured here.

Which form is fastest depends on the CPU (VNNI or not, AVX-512 or AVX2),
the model and the input size, so no table in code can say it. Auto makes
each candidate that runs natively here, drops those that change more than
``1 - AUTO_MIN_AGREEMENT`` of the labels on held-out calibration batches,
times the rest on one input of the size it will see, and takes the
fastest. The measured ranking is kept in a small JSON cache keyed by the
machine (:meth:`~.machine.Machine.fingerprint`), the fused model's
structure, the input shape and the device, so every later process (any
tool) on the same machine makes the same choice.
"""
import hashlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.fuse import random_inputs
from . import steps
from .cache import read_cache, write_cache
from .forms import FormUnavailable, parse_form, why_unavailable
from .machine import machine
from .timing import label_agreement, median_seconds

#: The forms auto may choose: PyTorch forms of the fused model that need no
#: export (the runtimes and ``torch.compile`` take minutes to prepare); the
#: CUDA graph forms are refused on the CPU, with the reason. The order only
#: breaks ties; measurement decides.
AUTO_CANDIDATES = ('winograd_lowres', 'int8_lowres', 'reduced_cl_lowres_graph',
                   'reduced_graph', 'reduced_cl_lowres', 'reduced_lowres',
                   'lowres', 'winograd', 'int8', 'reduced', 'fused')
#: Share of held-out calibration pixels a candidate must label as fp32
#: fused does.
AUTO_MIN_AGREEMENT = 0.99
#: Input size timed when neither calibration batches nor ``input_shape``
#: say what the model will see.
DEFAULT_SHAPE = (1, 3, 512, 1024)
#: Timed calls per candidate, after one warm-up call (which also lets a
#: Winograd form choose its kernels).
REPEATS = 3
CACHE_NAME = 'auto_ranking.json'


def split_calibration(batches: Sequence[Tensor]):
    """Calibrate on the first batches, check on the held-out rest."""
    if len(batches) < 2:
        return list(batches), list(batches)
    held = max(1, len(batches) // 4)
    return list(batches[:-held]), list(batches[-held:])


@torch.no_grad()
def seconds_per_call(deployed: nn.Module, inputs: Tensor) -> float:
    """Median wall time of :data:`REPEATS` calls after one warm-up."""
    return median_seconds(lambda: deployed(inputs), REPEATS, deployed.device)


def ranking_key(model: nn.Module, shape: Sequence[int], device: str) -> str:
    """Cache key: machine, the structure of ``model`` (fused: module types
    and tensor shapes, not values), input shape and device."""
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


def _agreement_problem(name: str, deployed, reference, check,
                       notes: List[str]) -> Optional[str]:
    """Why ``deployed`` changes too many labels, or None (noted if so)."""
    if not check or name == 'fused':
        return None
    agreement = label_agreement(reference, deployed, check)
    if agreement < AUTO_MIN_AGREEMENT:
        return (f'labels {agreement:.2%} of held-out calibration pixels '
                f'(training images) as fp32 does (bound '
                f'{AUTO_MIN_AGREEMENT:.0%})')
    notes.append(f'{name}: labels {agreement:.2%} of held-out calibration '
                 'pixels (training images) as fp32 does')
    return None


def auto_deploy(model: nn.Module,
                calibration: Optional[Sequence[Tensor]] = None,
                device: str = 'cpu',
                input_shape: Optional[Sequence[int]] = None,
                log: Callable[[str], None] = lambda line: None):
    """``deploy_model(form='auto')``: see the module's docstring.

    The ranking depends on the model's structure, not its weights, so it
    is cached; the label check depends on the weights and runs every time.

    Args:
        model (nn.Module): The segmentor (left unchanged).
        calibration (Sequence[Tensor], optional): Normalized batches; int8
            candidates are calibrated on all but the last quarter, and every
            candidate is checked and timed on the rest.
        device (str): Where the form runs.
        input_shape (Sequence[int], optional): N, C, H, W to time when no
            calibration batch gives it.
        log (callable): Receives one line per decision.

    Returns:
        DeployedModel: The chosen form; its ``notes`` say what was refused,
        measured, and chosen.

    Raises:
        FormUnavailable: No candidate runs here.
    """
    calibrate, check = split_calibration(calibration or [])
    sample = check[0][:1] if check else random_inputs(
        tuple(input_shape or DEFAULT_SHAPE))
    names, notes = _runnable(calibrate, device)
    fused = steps.build(model, parse_form('fused'), device=device)
    # The fused structure: a train-time and a fused checkpoint of one model
    # share the choice.
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
            problem = deployed and _agreement_problem(name, deployed, fused,
                                                      check, notes)
            if deployed is not None and problem is None:
                chosen = deployed
                break
            if problem:
                notes.append(f'auto refused {name}: {problem}')
    else:
        measured: Dict[str, float] = {}
        for name in names:
            deployed = make(name)
            if deployed is None:
                continue
            measured[name] = seconds_per_call(deployed, sample)
            problem = _agreement_problem(name, deployed, fused, check, notes)
            if problem:
                notes.append(f'auto refused {name}: {problem}')
            elif chosen is None or (measured[name]
                                    < measured[chosen.form.name]):
                chosen = deployed
        ranked = sorted(measured, key=measured.get)
        if ranked:
            notes.append('auto measured ' +
                         ', '.join(f'{name} {measured[name] * 1e3:.1f} ms'
                                   for name in ranked) +
                         f' at {tuple(sample.shape)}')
            cache[key] = ranked
            write_cache(CACHE_NAME, cache)
    for line in notes:
        log(line)
    if chosen is None:
        raise FormUnavailable('no deploy form runs here: ' + '; '.join(notes))
    chosen.notes[:0] = notes + [f'auto chose {chosen.form.name}']
    log(f'auto chose {chosen.form.name}')
    return chosen
