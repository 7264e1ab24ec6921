"""What a Winograd form chose per layer and what its kernel transforms
hold in memory, read through the kernel layer's public names."""
from typing import List

from torch import nn

from ..deploy.kernels import WinogradConv2d


def transform_bytes(model: nn.Module) -> int:
    """Bytes of the kernel transforms ``model``'s :class:`WinogradConv2d`
    modules keep besides their parameters."""
    return sum(module.transform_nbytes for module in model.modules()
               if isinstance(module, WinogradConv2d))


def choices_table(model: nn.Module) -> List[dict]:
    """One row per Winograd conv and input shape it has seen (shape and
    choice None if none yet): the conv's name and geometry, ``choice``,
    ``direct_ms``, ``winograd_ms`` (plain or space-to-batch; None where not
    measured) and ``rejected`` candidates with why."""
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, WinogradConv2d):
            continue
        common = dict(
            name=name,
            in_channels=module.in_channels,
            out_channels=module.out_channels,
            dilation=tuple(module.dilation),
            groups=module.groups)
        entries = module.choices.items() or [(None, dict(choice=None))]
        for shape, entry in entries:
            ms = entry.get('ms', {})
            rows.append(
                dict(
                    common,
                    shape=shape,
                    choice=entry['choice'],
                    direct_ms=ms.get('direct'),
                    winograd_ms=ms.get('winograd', ms.get('winograd_s2b')),
                    rejected=dict(entry.get('rejected', {}))))
    return rows
