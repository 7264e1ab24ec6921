"""Cross-layer range equalization of a fused segmentor before int8.

Output channel c of a conv followed by ReLU is divided by s_c > 0 and input
channel c of every conv that reads it multiplied by s_c (Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction",
ICCV 2019). ReLU, zero padding, average pooling, bilinear resizing and
concatenation commute with s_c, so fp32 computes the same function, while
channels whose ranges differ by orders of magnitude (RepVGG's summed
branches) share one activation scale far better. Folded into the weights:
nothing changes at run time.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from mmseg.models.decode_heads.psp_head import PSPHead
from torch import Tensor, nn

from ...models.backbones.repvgg import RepVGG
from .psp_lowres import LowResPSPHead
from .relu import relu_followers

#: Sweeps over the links at most; each link's scales move the next link's
#: weight ranges, so the paper iterates until the scales settle.
MAX_SWEEPS = 20
#: Settled: no scale of a sweep is further from 1 than this factor.
SETTLED = 1.01


@dataclass
class Link:
    """A conv whose output channels may be re-scaled, and its readers.

    Args:
        producer (str): A conv computing ``relu(conv(x))`` (its module).
        consumers (list[tuple[str, int]]): ``(weight parameter, first input
            channel)`` of every weight that reads the producer's output.
    """

    producer: str
    consumers: List[Tuple[str, int]]


def _backbone_blocks(model: nn.Module) -> List[List[str]]:
    """Fused block conv names of a RepVGG backbone, stage by stage (the
    stem first, alone)."""
    backbone = getattr(model, 'backbone', None)
    if type(backbone) is not RepVGG or not backbone.stem.deploy:
        return []
    stages = [['backbone.stem']] + [[
        f'backbone.{name}.{j}' for j in range(len(getattr(backbone, name)))
    ] for name in backbone.stage_names]
    return [[f'{block}.branch_reparam' for block in stage] for stage in stages]


def _psp_readers(head: nn.Module, name: str) -> Optional[Dict]:
    """``{'input': readers of the head's input, pyramid conv: its slice of
    the bottleneck}`` of an exact PSPHead (or its low-res form), or None."""
    if type(head) not in (PSPHead, LowResPSPHead) or not isinstance(
            head.in_index, int) or head.input_transform is not None:
        return None
    pyramid = [
        f'{name}.psp_modules.{k}.1.conv' for k in range(len(head.psp_modules))
    ]
    bottleneck = f'{name}.bottleneck'
    readers = {
        'input': [(f'{p}.weight', 0)
                  for p in pyramid] + [(f'{bottleneck}.conv.weight', 0)]
    }
    widths = [stage[1].conv.out_channels for stage in head.psp_modules]
    if type(head) is LowResPSPHead:
        # The pyramid's slice of the bottleneck, computed at pool size; its
        # output adds that slice's term outside the conv: not re-scaled.
        weight, first = f'{bottleneck}.pooled_weight', 0
    else:
        weight = f'{bottleneck}.conv.weight'
        first = head.bottleneck.conv.in_channels - sum(widths)
    for conv, width in zip(pyramid, widths):
        readers[conv] = [(weight, first)]
        first += width
    if type(head) is PSPHead:
        # The classifier: fp32 in the int8 forms, quantized by the runtimes.
        readers[f'{bottleneck}.conv'] = [(f'{name}.conv_seg.weight', 0)]
    return readers


def equalization_links(model: nn.Module) -> List[Link]:
    """The links of a fused segmentor whose readers are all known.

    A RepVGG backbone's blocks form a chain (each block's output is read
    by the next block only, unless it is a stage output a head reads); an
    exact PSPHead's input is read by its pyramid's 1x1 convs (after
    average pooling) and its bottleneck, and each pyramid conv by its
    slice of the bottleneck, the bottleneck by the classifier (except in
    the low-res head). A stage output read by any other head or a neck is
    not re-scaled (its readers are unknown here). Other backbones (ResNet
    applies its ReLUs inside ``forward``, after a residual sum) give no
    links.

    Args:
        model (nn.Module): A fused segmentor; not changed.
    """
    stages = _backbone_blocks(model)
    if not stages:
        return []
    followers = relu_followers(model)
    backbone, neck = model.backbone, getattr(model, 'neck', None) is not None
    # Readers of each stage output besides the next block; None: unknown.
    outside: Dict[int, Optional[List]] = {}
    psp = {}
    for name in ('decode_head', 'auxiliary_head'):
        head = getattr(model, name, None)
        if head is None:
            continue
        readers = _psp_readers(head, name) or {}
        psp.update({k: v for k, v in readers.items() if k != 'input'})
        index = getattr(head, 'in_index', None)
        if neck or not readers:
            # A neck, or a head not analysed here: what it reads is off.
            used = (
                range(len(backbone.out_indices)) if neck or index is None else
                [index] if isinstance(index, int) else index)
            outside.update({backbone.out_indices[i] + 1: None for i in used})
            continue
        stage = backbone.out_indices[index] + 1  # 0: the stem
        if outside.get(stage, []) is not None:
            outside[stage] = outside.get(stage, []) + readers['input']
    convs = [(conv, i, j == len(stage) - 1) for i, stage in enumerate(stages)
             for j, conv in enumerate(stage)]
    links = []
    for k, (conv, stage, last) in enumerate(convs):
        readers = [(f'{convs[k + 1][0]}.weight',
                    0)] if k + 1 < len(convs) else []
        extra = outside.get(stage, []) if last else []
        if extra is None or conv not in followers:
            continue
        if readers + extra:
            links.append(Link(conv, readers + extra))
    links += [
        Link(conv, readers) for conv, readers in psp.items()
        if conv in followers
    ]
    return links


def column_ranges(weight: Tensor, groups: int) -> Tensor:
    """Max |w| over everything a weight multiplies input channel c with,
    per input channel (grouped weights: only that group's rows)."""
    per_channel = weight.detach().abs().flatten(2).amax(2)  # (out, in/g)
    rows = per_channel.shape[0] // groups
    return per_channel.view(groups, rows, -1).amax(1).flatten()


def _groups(model: nn.Module, weight: str) -> int:
    return getattr(model.get_submodule(weight.rpartition('.')[0]), 'groups', 1)


def _reader_ranges(model: nn.Module, link: Link, width: int) -> Tensor:
    """The largest column range over the link's readers, per channel."""
    ranges = []
    for weight, first in link.consumers:
        columns = column_ranges(
            model.get_parameter(weight), _groups(model, weight))
        ranges.append(columns[first:first + width])
    return torch.stack(ranges).amax(0)


def _scale_link(model: nn.Module, link: Link, scales: Tensor) -> None:
    """Producer's output channel c / s_c, readers' input channel c * s_c."""
    producer = model.get_submodule(link.producer)
    producer.weight.div_(scales.view(-1, 1, 1, 1))
    if producer.bias is not None:
        producer.bias.div_(scales)
    for name, first in link.consumers:
        weight, groups = model.get_parameter(name), _groups(model, name)
        factors = torch.ones(weight.shape[1] * groups)
        factors[first:first + len(scales)] = scales
        rows = weight.shape[0] // groups
        # Input channel g * (in/g) + i meets rows of group g, column i.
        view = weight.view(groups, rows, weight.shape[1], -1)
        view.mul_(factors.view(groups, 1, -1, 1))


@torch.no_grad()
def equalize(
        model: nn.Module,
        links: List[Link],
        output_max: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
    """Equalize ``links`` of ``model`` in place; returns each producer's
    scales (its output channel c is now divided by ``scales[c]``).

    Each sweep sets ``s_c = sqrt(r_c / w_c)`` for every link, so that the
    producer's range ``r_c / s_c`` and the readers' largest column range
    ``w_c * s_c`` meet at ``sqrt(r_c w_c)`` (the paper's rule), until the
    scales settle. No constant is taken out: ``sqrt(r_c w_c)`` does not
    change under any re-scaling of the model, so parts that meet in one
    tensor (PSP's concatenation) keep consistent ranges. ``r_c`` is the
    producer's observed output max where given (the range int8
    activations must hold) and its weight range otherwise; a channel
    never active on the data is balanced by its weights at the scale of
    the active ones.

    Args:
        model (nn.Module): A fused float segmentor.
        links (list[Link]): From :func:`equalization_links`.
        output_max (dict, optional): Producer -> per-channel max of its
            ReLU output on calibration data, measured before equalizing.
    """
    total = {link.producer: None for link in links}
    for _ in range(MAX_SWEEPS):
        moved = 1.0
        for link in links:
            ranges = _producer_ranges(model, link, output_max,
                                      total[link.producer])
            readers = _reader_ranges(model, link, len(ranges))
            scales = (ranges.clamp_min(1e-30) /
                      readers.clamp_min(1e-30)).clamp(1e-12, 1e12).sqrt()
            _scale_link(model, link, scales)
            old = total[link.producer]
            total[link.producer] = scales if old is None else old * scales
            moved = max(moved, float(scales.max()), 1 / float(scales.min()))
        if moved <= SETTLED:
            break
    return {name: s for name, s in total.items() if s is not None}


def _producer_ranges(model: nn.Module, link: Link,
                     output_max: Optional[Dict[str, Tensor]],
                     done: Optional[Tensor]) -> Tensor:
    """The producer's output range per channel now (``done``: the scales
    its output was divided by so far)."""
    weights = model.get_submodule(
        link.producer).weight.detach().abs().flatten(1).amax(1)
    if not output_max or link.producer not in output_max:
        return weights
    seen = output_max[link.producer].float()
    seen = seen if done is None else seen / done
    active = seen > 0
    if not active.any():
        return weights
    # A channel never active on the data: its weight range times the
    # active channels' typical ratio of output to weight range.
    ratio = (seen[active] / weights[active].clamp_min(1e-30)).median()
    return torch.where(active, seen, weights * ratio)
