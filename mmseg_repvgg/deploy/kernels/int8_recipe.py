"""The int8 forms' calibration around :mod:`.int8`: statistics, range
equalization, min/max ranges, bias correction, a per-conv fallback to fp32.
An MSE-optimal clip of the ranges did not help (docs/deployment.md)."""
import functools
from dataclasses import dataclass
from typing import (Callable, Dict, Iterable, List, Optional, Sequence, Tuple,
                    Union)

import torch
from torch import Tensor, nn

from ...compare import norm_error
from ...errors import ConfigError
from .equalize import equalization_links, equalize
from .int8 import (Int8Conv2d, Range, calibration_statistics,
                   default_activation_bits, quantizable_convs, quantize_int8,
                   run_batches, weight_qparams)
from .relu import relu_followers

#: A conv whose int8 output is further from fp32 (relative norm, worst batch)
#: stays fp32: RepVGG's fused convs measure 0.01-0.1, broken ranges 1 or more.
MAX_ERROR = 0.15


@dataclass(frozen=True)
class Recipe:
    """What the int8 precision step does around the kernel.

    Args:
        equalize (bool): Cross-layer range equalization first.
        bias_correction (bool): Remove the mean the weights' rounding adds
            to each output channel from its bias.
        max_error (float, optional): The fallback bound (see
            :data:`MAX_ERROR`); None quantizes every quantizable conv.
    """

    equalize: bool = True
    bias_correction: bool = True
    max_error: Optional[float] = MAX_ERROR


#: The int8 forms use ``'default'`` (each step measured to help); ``'plain'``
#: is the first int8 forms' recipe, the others add one step to it.
RECIPES: Dict[str, Recipe] = {
    'default': Recipe(),
    'plain': Recipe(False, False, None),
    'equalized': Recipe(bias_correction=False, max_error=None),
    'biascorrected': Recipe(max_error=None),
    'fallback': Recipe(False, False),
}


def corrected_bias(conv: nn.Conv2d, mean: Tensor) -> Tensor:
    """The conv's bias minus the mean its rounded weights add to each
    output on inputs of per-channel ``mean`` (borders ignored)."""
    qweight, scales = weight_qparams(conv.weight)
    rounded = qweight.float() * scales.view(-1, 1, 1, 1)
    error = (rounded - conv.weight.float()).sum((2, 3))  # (out, in / groups)
    groups = conv.groups
    shift = (error.view(groups, -1, error.shape[1]) *
             mean.view(groups, 1, -1)).sum(2).flatten()
    bias = conv.bias.detach().float() if conv.bias is not None else 0
    return bias - shift


@torch.no_grad()
def _fallback(model: nn.Module, ranges: Dict[str, Range],
              biases: Dict[str, Tensor], batches: Iterable[Tensor],
              forward: Callable, bits: int, bound: float) -> str:
    """Each conv's worst error in int8 (its ReLU in the kernel) against fp32
    on fp32's inputs as ``model.int8_errors``, those over ``bound`` dropped
    from ``ranges``; one line on what stays fp32 and why."""
    modules = dict(model.named_modules())
    followers = relu_followers(model)
    kernels, errors = {}, {}
    for name, span in ranges.items():
        kernels[name] = Int8Conv2d(modules[name], span, name in followers,
                                   bits)
        if name in biases:
            kernels[name].bias = biases[name]

    def compare(name, module, args, out):
        expected = out.relu() if name in followers else out
        error = norm_error(expected, kernels[name](args[0]))
        errors[name] = max(errors.get(name, 0.0), error)

    run_batches([
        modules[n].register_forward_hook(functools.partial(compare, n))
        for n in ranges
    ], batches, forward)
    model.int8_errors = errors
    kept = [name for name in ranges if errors[name] > bound]
    for name in kept:
        del ranges[name]
    worst = max((errors[name] for name in ranges), default=0.0)
    return (f'int8 fallback: {len(kept)} of {len(errors)} convs kept fp32 '
            f'(int8 error over {bound:g} on the calibration images)' +
            ''.join(f', {name} {errors[name]:.3f}' for name in kept) +
            f'; the largest error in int8: {worst:.3f}')


def quantize_calibrated(
        model: nn.Module,
        batches: Sequence[Tensor],
        forward: Callable[[Tensor], object],
        recipe: Union[str, Recipe] = 'default',
        activation_bits: Optional[int] = None) -> Tuple[nn.Module, List[str]]:
    """Quantize a fused float segmentor in place, by ``recipe``; each
    conv's measured error is kept as ``model.int8_errors``.

    Args:
        model (nn.Module): The fused segmentor (fp32, CPU, eval mode).
        batches (Sequence[Tensor]): Calibration inputs for ``forward``.
        forward (callable): Runs ``model`` on one batch.
        recipe (str | Recipe): A key of :data:`RECIPES`, or a recipe.
        activation_bits (int, optional): See :class:`~.int8.Int8Conv2d`.

    Returns:
        tuple: The model, and notes (what was equalized, what stays fp32).
    """
    if not isinstance(recipe, Recipe) and recipe not in RECIPES:
        raise ConfigError(f'unknown int8 recipe {recipe!r}; one of '
                          f'{", ".join(RECIPES)}')
    spec = recipe if isinstance(recipe, Recipe) else RECIPES[recipe]
    bits = activation_bits or default_activation_bits()
    names = quantizable_convs(model)
    stats, factors, notes = _equalize(model, names, batches, forward,
                                      spec.equalize)
    ranges, biases = {}, {}
    for name in names:
        stat, factor = stats[name], factors[name]
        if stat.low is None:  # never ran
            continue
        low, high = stat.low / factor, stat.high / factor
        ranges[name] = (float(low.min()), float(high.max()))
        if spec.bias_correction:
            mean = (stat.total / stat.count).float() / factor
            biases[name] = corrected_bias(model.get_submodule(name), mean)
    model.int8_errors = {}
    if spec.max_error is not None:
        notes.append(
            _fallback(model, ranges, biases, batches, forward, bits,
                      spec.max_error))
    for name in ranges.keys() & biases.keys():
        model.get_submodule(name).bias = nn.Parameter(biases[name])
    if not ranges:
        notes.append('int8: no conv within the error bound; all run fp32')
        return model, notes
    return quantize_int8(model, ranges, True, bits)[0], notes


def _equalize(model: nn.Module, names: List[str], batches: Iterable[Tensor],
              forward: Callable, on: bool):
    """The statistics pass, then equalization if ``on``: each conv's input
    stats, what equalization divided its input channels by, the notes."""
    links = equalization_links(model) if on else []
    stats, output_max = calibration_statistics(
        model, names, [link.producer for link in links], batches, forward)
    scales = equalize(model, links, output_max)
    factors = {
        n: torch.ones(model.get_submodule(n).in_channels)
        for n in names
    }
    for link in links:
        for weight, first in link.consumers:
            conv, _, param = weight.rpartition('.')
            if param == 'weight' and conv in factors:
                part = scales[link.producer]
                factors[conv][first:first + len(part)] = part
    notes = [
        f'int8 range equalization: {len(links)} convs re-scaled with their '
        'readers (exact in fp32)'
    ] if links else []
    return stats, factors, notes


def equalize_calibrated(model: nn.Module, batches: Sequence[Tensor],
                        forward: Callable[[Tensor], object]) -> List[str]:
    """Range equalization alone, in place, for the runtimes that quantize
    an export themselves (onnxruntime, OpenVINO); returns its note."""
    return _equalize(model, [], batches, forward, True)[2]


def int8_layer_table(model: nn.Module) -> List[Dict]:
    """Per conv of a model :func:`quantize_calibrated` made: ``name``, weight
    ``shape``, ``groups``, ``precision`` and measured int8 ``error``."""
    errors = getattr(model, 'int8_errors', {})
    rows = []
    for name, module in model.named_modules():
        int8 = isinstance(module, Int8Conv2d)
        if int8 or isinstance(module, nn.Conv2d):
            weight = module.weight_int8 if int8 else module.weight
            rows.append(
                dict(
                    name=name,
                    shape=tuple(weight.shape),
                    groups=module.groups,
                    precision='int8' if int8 else 'fp32',
                    error=errors.get(name)))
    return rows
