"""Put :class:`~.winograd.WinogradConv2d` into a model, the ReLUs that
follow moved into them (choices are kept per machine by :mod:`.tuning`)."""
import copy
from typing import Dict, List, Tuple

from torch import nn

from .relu import relu_followers
from .winograd import WinogradConv2d, _nnpack_usable, ineligible_reason


def fuse_relus(model: nn.Module) -> List[str]:
    """Move the ReLUs that :func:`.relu.relu_followers` finds after a
    :class:`WinogradConv2d` into it, in place; the names of their owners."""
    fused = []
    for conv_name, (owner, act) in relu_followers(model).items():
        conv = model.get_submodule(conv_name)
        if not isinstance(conv, WinogradConv2d):
            continue
        conv.relu = True
        setattr(owner, act, nn.Identity())
        fused.append(conv_name.rpartition('.')[0])
    return fused


def winograd_convs(model: nn.Module,
                   inplace: bool = False,
                   algorithm: str = 'auto',
                   relu: bool = True,
                   cache: bool = True) -> Tuple[nn.Module, List[str]]:
    """Replace every eligible (:func:`~.winograd.ineligible_reason`) conv
    of a fused float32 CPU model by a :class:`WinogradConv2d` (one per conv).

    Args:
        model (nn.Module): The model (or a single conv).
        inplace (bool): Modify ``model`` itself, not a deep copy.
        algorithm (str): ``'auto'``, ``'direct'`` or ``'winograd'``.
        relu (bool): Fuse the ReLUs that follow (:func:`fuse_relus`).
        cache (bool): Read and write choices in the on-disk cache.

    Returns:
        tuple: The model and the replaced convs' names (``''``: itself).
    """
    if algorithm not in ('auto', 'direct', 'winograd'):
        raise ValueError(f"algorithm must be 'auto', 'direct' or "
                         f"'winograd', not {algorithm!r}")
    if not inplace:
        model = copy.deepcopy(model)
    _nnpack_usable()  # the one fallback line, if any, at conversion time

    def make(conv: nn.Conv2d) -> WinogradConv2d:
        algo = algorithm
        if algo == 'winograd' and tuple(conv.dilation) != (1, 1):
            algo = 'winograd_s2b'
        return WinogradConv2d(conv, algo, cache=cache)

    if ineligible_reason(model) is None:
        model, names = make(model), ['']
    else:
        found = [
            (name, module)
            for name, module in model.named_modules(remove_duplicate=False)
            if name and ineligible_reason(module) is None
        ]
        replaced: Dict[int, WinogradConv2d] = {}
        for name, module in found:
            if id(module) not in replaced:
                replaced[id(module)] = make(module)
            model.set_submodule(name, replaced[id(module)])
        if relu:
            fuse_relus(model)
        names = [name for name, _ in found]
    return model, names
