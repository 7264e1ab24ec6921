"""What a Winograd form chose per layer, and what its kernel transforms
hold in memory: the benchmark's report on the kernel layer, read through
that layer's public names only."""
from typing import List

from torch import nn

from ..deploy.kernels import WinogradConv2d


def transform_bytes(model: nn.Module) -> int:
    """Bytes held by the kernel transforms of ``model``'s
    :class:`WinogradConv2d` modules (weights the deployed model keeps
    besides its parameters)."""
    return sum(module.transform_nbytes for module in model.modules()
               if isinstance(module, WinogradConv2d))


def choices_table(model: nn.Module) -> List[dict]:
    """One row per Winograd conv and input shape it has seen (a conv that
    has not run yet gets one row with shape and choice None).

    Rows have ``name``, ``shape``, ``in_channels``, ``out_channels``,
    ``dilation``, ``groups``, ``choice``, ``direct_ms``, ``winograd_ms``
    (plain or space-to-batch, whichever is the conv's candidate) and
    ``rejected`` (failed candidates, with why). Times are None where not
    measured; a choice from the on-disk cache has the times measured then.
    """
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
