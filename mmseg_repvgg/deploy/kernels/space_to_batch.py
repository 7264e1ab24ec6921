"""A dilated 3x3 conv as an undilated one on interleaved sub-grids: NNPACK
has no dilation, and RepVGG's output-stride-8 stages are dilated."""
from typing import Callable, Optional, Sequence

import torch.nn.functional as F
from torch import Tensor


def space_to_batch_conv(x: Tensor,
                        weight: Tensor,
                        bias: Optional[Tensor],
                        padding: Sequence[int],
                        dilation: Sequence[int],
                        groups: int = 1,
                        *,
                        conv: Callable[..., Tensor]) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, dilation=dilation,
    groups=groups)`` (stride 1, 3x3) by the undilated ``conv(x, weight,
    bias, padding, groups)``. Output row ``d * q + r`` reads only padded
    input rows ``d * (q + a) + r``, so each of the ``d x d`` interleaved
    sub-images gets an undilated conv; they are tiled on one canvas, each
    followed by a zero row and column (NNPACK transforms per call)."""
    n, c, h, w = x.shape
    (pad_h, pad_w), (d_h, d_w) = padding, dilation
    out_h, out_w = h + 2 * pad_h - 2 * d_h, w + 2 * pad_w - 2 * d_w
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'input {tuple(x.shape)} is too small for a 3x3 '
                         f'conv of dilation {tuple(dilation)} and padding '
                         f'{tuple(padding)}')
    # s: sub-convs padded (p >= d); top, left: explicit padding; m: size.
    s_h, s_w = int(pad_h >= d_h), int(pad_w >= d_w)
    top, left = pad_h - s_h * d_h, pad_w - s_w * d_w
    len_h, len_w = h + 2 * top, w + 2 * left
    m_h, m_w = -(-len_h // d_h), -(-len_w // d_w)
    pads = (left, left + m_w * d_w - len_w, top, top + m_h * d_h - len_h)
    if any(pads):
        x = F.pad(x, pads)
    canvas = x.new_zeros((n, c, d_h * (m_h + 1), d_w * (m_w + 1)))
    # Canvas block (r_h, r_w) holds the sub-image x[..., r_h::d_h, r_w::d_w].
    canvas.view(n, c, d_h, m_h + 1, d_w, m_w + 1)[:, :, :, :m_h, :, :m_w] = (
        x.reshape(n, c, m_h, d_h, m_w, d_w).permute(0, 1, 3, 2, 5, 4))
    y = conv(canvas, weight, bias, (1, 1), groups)
    o = y.shape[1]
    # Unpadded sub-convs (s = 0) lose a row and column at each border.
    u_h, u_w = 1 - s_h, 1 - s_w
    y = y.reshape(n, o, d_h, m_h + 1, d_w, m_w + 1)
    y = y[:, :, :, u_h:m_h - u_h, :, u_w:m_w - u_w].permute(0, 1, 3, 2, 5, 4)
    y = y.reshape(n, o, (m_h - 2 * u_h) * d_h, (m_w - 2 * u_w) * d_w)
    if y.shape[2:] != (out_h, out_w):
        y = y[:, :, :out_h, :out_w]
    return y
