"""A dilated 3x3 conv as an undilated one on interleaved sub-grids.

NNPACK has no dilation; this is how :mod:`.winograd` serves RepVGG's
dilated stages (output stride 8). Written by hand: neither torch nor NNPACK
has it.
"""
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
    """A dilated stride-1 3x3 conv as an undilated one on sub-grids.

    With dilation ``d`` along an axis, output row ``d * q + r`` reads only
    padded input rows ``d * (q + a) + r`` (``a = 0, 1, 2``): rows of the
    residue class ``r``, one apart within it. So each of the ``d x d``
    interleaved sub-images of the padded input gets an undilated 3x3 conv
    whose output is the matching sub-grid of the dilated conv's output
    (space-to-batch, conv, batch-to-space). NNPACK has no dilation, and this
    is how it serves RepVGG's dilated stages (output stride 8).

    The sub-images are not made a batch but tiled on one canvas, each
    followed by a zero row and column (the padding of its neighbours), and
    the canvas gets one conv of padding 1: NNPACK's batch-1 path transforms
    the kernel once per call, and its batched path (what a batch of
    sub-images would get) is slower; one call per sub-image would transform
    the kernel ``d * d`` times. The gutters cost ``1 / m`` more pixels per
    axis for sub-images of ``m`` rows.

    When the padding ``p`` is at least ``d`` (RepVGG's ``p == d``), padding
    by ``p`` equals padding by ``p - d`` and then by ``d``, and padding the
    image by ``d`` pads every sub-image by 1, which the gutters provide, so
    only ``p - d`` is padded explicitly (none for RepVGG). For ``p < d``
    the sub-convs are unpadded: the outputs next to the gutters are
    dropped. Each axis is also padded at its end to a multiple of ``d``
    (zeros, where padding is anyway) so that the sub-images tile it; the
    outputs this adds are cropped, so any ``H`` and ``W`` work.

    Args:
        x (Tensor): ``(N, C, H, W)`` input.
        weight (Tensor): ``(O, C / groups, 3, 3)``.
        bias (Tensor, optional): ``(O, )``.
        padding (Sequence[int]): Zero padding ``(pH, pW)`` of the dilated
            conv.
        dilation (Sequence[int]): ``(dH, dW)``.
        groups (int): As ``F.conv2d``'s.
        conv (callable): The undilated conv,
            ``conv(x, weight, bias, padding, groups)`` (e.g.
            :func:`.winograd.nnpack_conv`).

    Returns:
        Tensor: ``F.conv2d(x, weight, bias, padding=padding,
        dilation=dilation, groups=groups)`` up to rounding.
    """
    n, c, h, w = x.shape
    (pad_h, pad_w), (d_h, d_w) = padding, dilation
    out_h, out_w = h + 2 * pad_h - 2 * d_h, w + 2 * pad_w - 2 * d_w
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'input {tuple(x.shape)} is too small for a 3x3 '
                         f'conv of dilation {tuple(dilation)} and padding '
                         f'{tuple(padding)}')
    # Per axis: s = 1 if the sub-convs are padded (p >= d), else 0; the
    # explicit padding; the sub-image size m.
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
