"""NNPACK by torch's private op ``torch._nnpack_spatial_convolution`` where
the C entry point is unusable (imports only torch, for :mod:`.guard`)."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...compare import norm_error
from .nnpack import TOLERANCE, pad_beyond_limit


def torch_op_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                  padding: Sequence[int], groups: int) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, groups=groups)`` by
    torch's op, one image and group a call (faster than a batch)."""
    x, pad = pad_beyond_limit(x, padding)
    # Looked up at call time: a missing or replaced op is then seen.
    op = torch._nnpack_spatial_convolution
    n = x.shape[0]
    if n == 1 and groups == 1:
        return op(x, weight, bias, pad)
    cin = x.shape[1] // groups
    cout = weight.shape[0] // groups
    out = None
    for g in range(groups):
        ci, co = slice(g * cin, (g + 1) * cin), slice(g * cout, (g + 1) * cout)
        weight_g = weight[co]
        bias_g = None if bias is None else bias[co]
        for i in range(n):
            y = op(x[i:i + 1, ci], weight_g, bias_g, pad)
            if out is None:
                out = y.new_empty((n, weight.shape[0]) + y.shape[2:])
            out[i:i + 1, co] = y
    return out


def check_torch_op() -> Optional[str]:
    """Why torch's NNPACK op is unusable here (missing, or wrong on this
    CPU against ``F.conv2d`` at batch 1), or None."""
    op = getattr(torch, '_nnpack_spatial_convolution', None)
    if op is None:
        return 'this torch build has no torch._nnpack_spatial_convolution'
    try:
        # Also initializes NNPACK: the op itself fails until this ran once.
        available = torch.backends.nnpack.is_available()
    except Exception as error:  # noqa: BLE001  (a private API may break)
        return (f'torch.backends.nnpack.is_available() raised '
                f'{type(error).__name__}: {error}')
    if not available:
        return 'torch.backends.nnpack.is_available() is False'
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 8, 3, 3, generator=gen)
    bias = torch.randn(6, generator=gen)
    for padding in ([1, 1], [0, 2]):
        x = torch.randn(1, 8, 11, 13, generator=gen)
        with torch.no_grad():
            try:
                out = op(x, weight, bias, padding)
            except Exception as error:  # noqa: BLE001
                return (f'torch._nnpack_spatial_convolution raised '
                        f'{type(error).__name__}: {error}')
            ref = F.conv2d(x, weight, bias, padding=tuple(padding))
        if not isinstance(out, Tensor) or out.shape != ref.shape:
            return ('torch._nnpack_spatial_convolution returned the wrong '
                    'shape')
        err = norm_error(ref, out)
        if not err < TOLERANCE:
            return (f'torch._nnpack_spatial_convolution differs from '
                    f'F.conv2d by a relative error of {err:.2g} (bound '
                    f'{TOLERANCE:g}) at padding {padding}')
    return None
