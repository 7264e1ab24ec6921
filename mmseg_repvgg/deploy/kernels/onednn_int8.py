"""The only calls of oneDNN's private int8 conv ops, and their check: a
call that does not fit their schema crashes, so :func:`check_qconv` runs in
a child process first (:mod:`.guard`), which loads only this and compare."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...compare import norm_error

#: Relative error :func:`check_qconv` allows; 7-bit inputs stay well inside.
CHECK_TOLERANCE = 0.03

#: stride, padding, dilation, groups, as the ops take them.
Geometry = Tuple[List[int], List[int], List[int], int]


def weight_qparams(weight: Tensor) -> Tuple[Tensor, Tensor]:
    """Symmetric per-output-channel int8: ``(int8 weight, fp32 scales)``."""
    weight = weight.detach().float()
    scales = weight.abs().amax(dim=tuple(range(1, weight.dim()))) / 127
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    shape = (-1, ) + (1, ) * (weight.dim() - 1)
    qweight = torch.round(weight / scales.view(shape)).clamp(-127, 127)
    return qweight.to(torch.int8), scales


def prepack(qweight: Tensor, scales: Tensor, input_scale: float,
            input_zero_point: int, geometry: Geometry) -> Tensor:
    """oneDNN's blocked layout of an int8 weight (an opaque tensor)."""
    return torch.ops.onednn.qconv_prepack(qweight, scales, input_scale,
                                          input_zero_point, *geometry, None)


def qconv(q: Tensor, input_scale: float, input_zero_point: int, packed: Tensor,
          weight_scale: Tensor, weight_zero_point: Tensor,
          bias: Optional[Tensor], geometry: Geometry, attr: str) -> Tensor:
    """The int8 conv: ``q`` (uint8, channels_last) in, fp32 out; ``attr``
    ``'relu'`` applies ReLU in the kernel."""
    return torch.ops.onednn.qconv_pointwise(q, input_scale, input_zero_point,
                                            packed, weight_scale,
                                            weight_zero_point, bias, *geometry,
                                            1.0, 0, torch.float32, attr, [],
                                            '')


def _run_case(gen: torch.Generator, stride: int, groups: int,
              relu: bool) -> Optional[str]:
    weight = torch.randn(8, 16 // groups, 3, 3, generator=gen)
    bias = torch.randn(8, generator=gen)
    x = torch.rand(1, 16, 7, 9, generator=gen)
    qweight, scales = weight_qparams(weight)
    # Levels 0..127: no int16 pair sum saturates without VNNI (any x86 CPU).
    scale = 1.0 / 127
    # What quantize_per_tensor gives, without torch's deprecated quint8.
    q = torch.round(x / scale).to(
        torch.uint8).contiguous(memory_format=torch.channels_last)
    geometry = ([stride] * 2, [1, 1], [1, 1], groups)
    packed = prepack(qweight, scales, scale, 0, geometry)
    out = qconv(q, scale, 0, packed, scales, torch.zeros(8, dtype=torch.long),
                bias, geometry, 'relu' if relu else 'none')
    ref = F.conv2d(x, weight, bias, stride, 1, 1, groups)
    ref = ref.relu() if relu else ref
    if not isinstance(out, Tensor) or out.shape != ref.shape:
        return 'onednn.qconv_pointwise returned the wrong shape'
    err = norm_error(ref, out)
    if not err < CHECK_TOLERANCE:
        return (f'onednn.qconv_pointwise differs from F.conv2d by a relative '
                f'error of {err:.2g} (bound {CHECK_TOLERANCE:g})')
    return None


def check_qconv() -> Optional[str]:
    """Why oneDNN's int8 conv ops cannot run here, or None: two small convs
    (one grouped, strided, with ReLU) against ``F.conv2d``."""
    # A missing op raises here like a broken one (machine.py asks first).
    gen = torch.Generator().manual_seed(0)
    for stride, groups, relu in ((1, 1, False), (2, 2, True)):
        try:
            with torch.inference_mode():
                problem = _run_case(gen, stride, groups, relu)
        except Exception as error:  # noqa: BLE001  (a private op may break)
            return f'{type(error).__name__}: {error}'
        if problem is not None:
            return problem
    return None
