"""PSPNet's bottleneck conv with its pooled branches at pool resolution:
PSPHead's 3x3 conv on ``x`` and the upsampled pyramid maps is a third of
PSPNet-RepVGG's FLOPs, half of it on maps of 1x1 .. 6x6 distinct values.
Conv and upsampling are linear and commute per tap, so::

    conv3x3(up(p)) = sum over taps t of shift_t(up(W_t p))
                   = L @ R,  L = [shift_t(A_h)] (H x 3S),
                             R = [W_t p] A_w^T  (3S x W per channel)

with ``A_h``, ``A_w`` ``F.interpolate``'s upsampling matrices: a few small
matmuls instead of a 2048-channel conv, equal up to rounding.
"""
from typing import List, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.psp_head import PSPHead
from torch import Tensor, nn


def interpolation_matrix(src: int, dst: int, align_corners: bool,
                         like: Tensor) -> Tensor:
    """(dst, src) matrix of ``F.interpolate``'s 1-D bilinear resizing."""
    eye = torch.eye(src, device=like.device).reshape(src, 1, src, 1)
    out = F.interpolate(
        eye, size=(dst, 1), mode='bilinear', align_corners=align_corners)
    return out.reshape(src, dst).t().to(like.dtype)


def _shifted(matrix: Tensor, offsets: Sequence[int]) -> Tensor:
    """``out[t, i] = matrix[i + offsets[t]]``, zero outside (padding)."""
    rows = matrix.shape[0]
    index = torch.arange(rows, device=matrix.device)
    shifted = []
    for offset in offsets:
        source = index + offset
        inside = ((source >= 0) & (source < rows)).to(matrix.dtype)
        shifted.append(matrix[source.clamp(0, rows - 1)] * inside[:, None])
    return torch.stack(shifted)


class LowResPSPBottleneck(nn.Module):
    """``bottleneck(cat([x, up(p1), .., up(pn)]))`` as ``conv(x) + L @ R``
    for ``x`` of ``in_channels`` (weights copied)."""

    def __init__(self, bottleneck: ConvModule, in_channels: int,
                 align_corners: bool):
        super().__init__()
        conv = bottleneck.conv
        if (tuple(conv.stride) != (1, 1) or conv.groups != 1
                or conv.padding_mode != 'zeros'
                or tuple(bottleneck.order) != ('conv', 'norm', 'act')):
            raise ValueError('only a stride-1, ungrouped conv -> norm -> act '
                             'bottleneck can be computed at low resolution')
        self.conv = nn.Conv2d(
            in_channels,
            conv.out_channels,
            conv.kernel_size,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
            device=conv.weight.device,
            dtype=conv.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight[:, :in_channels])
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)
        self.pooled_weight = nn.Parameter(
            conv.weight[:, in_channels:].detach().clone(), requires_grad=False)
        self.norm = bottleneck.norm if bottleneck.with_norm else None
        self.act = bottleneck.activate if bottleneck.with_activation else None
        self.align_corners = align_corners

    def _offsets(self, dim: int) -> List[int]:
        kernel, dilation = self.conv.kernel_size[dim], self.conv.dilation[dim]
        return [k * dilation - self.conv.padding[dim] for k in range(kernel)]

    def pooled_term(self, pooled: Sequence[Tensor], height: int,
                    width: int) -> Tensor:
        """The conv of the upsampled pooled maps, at ``height x width``."""
        weights = torch.split(
            self.pooled_weight.contiguous(), [p.shape[1] for p in pooled],
            dim=1)
        lefts, rights = [], []
        for maps, weight in zip(pooled, weights):
            a_h = interpolation_matrix(maps.shape[2], height,
                                       self.align_corners, maps)
            a_w = interpolation_matrix(maps.shape[3], width,
                                       self.align_corners, maps)
            # Mix channels per tap at pool resolution, then resize columns.
            taps = torch.einsum('ocyx,ncab->nyxoab', weight, maps)
            rights.append(
                torch.einsum('nyxoab,xjb->nyoaj', taps,
                             _shifted(a_w, self._offsets(1))))
            lefts.append(_shifted(a_h, self._offsets(0)))
        # One contraction over (row tap, pooled row) of every scale at once.
        left = torch.cat(lefts, dim=2)  # (taps, H, S)
        right = torch.cat(rights, dim=3)  # (N, taps, O, S, W)
        return torch.einsum('yhs,nyosw->nohw', left, right)

    def forward(self, x: Tensor, pooled: Sequence[Tensor]) -> Tensor:
        out = self.conv(x) + self.pooled_term(pooled, *x.shape[2:])
        if self.norm is not None:
            out = self.norm(out)
        return self.act(out) if self.act is not None else out


class LowResPSPHead(PSPHead):
    """PSPHead with a :class:`LowResPSPBottleneck` as its bottleneck."""

    def _forward_feature(self, inputs):
        x = self._transform_inputs(inputs)
        pooled = [stage(x) for stage in self.psp_modules]
        return self.bottleneck(x, pooled)


def lowres_psp_heads(model: nn.Module) -> List[str]:
    """Switch every PSPHead of ``model`` to :class:`LowResPSPHead`, in place.

    Returns:
        list[str]: Names of the switched heads.
    """
    switched = []
    for name, module in model.named_modules():
        # Exact type: a subclass may compute its features differently.
        if type(module) is not PSPHead:
            continue
        conv = module.bottleneck.conv
        in_channels = conv.in_channels - sum(stage[1].conv.out_channels
                                             for stage in module.psp_modules)
        module.bottleneck = LowResPSPBottleneck(
            module.bottleneck, in_channels, module.psp_modules.align_corners)
        # A class switch: mmseg keeps no config to build the head again.
        module.__class__ = LowResPSPHead
        switched.append(name)
    return switched
