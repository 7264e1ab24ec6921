"""Cross-layer range equalization before int8 (Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", ICCV 2019):
a conv+ReLU's output channel c divided by s_c > 0, its readers' input
channel c multiplied by s_c. ReLU, padding, pooling, resizing and concat
commute with s_c: fp32 is unchanged, RepVGG's channel ranges (orders of
magnitude apart) come close, and the weights hold it: free at run time."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from mmseg.models.decode_heads.psp_head import PSPHead
from torch import Tensor, nn

from ...models.backbones.repvgg import RepVGG
from .psp_lowres import LowResPSPHead
from .relu import relu_followers

#: Sweeps at most (each link's scales move the next link's weight ranges).
MAX_SWEEPS = 20
#: Settled: no scale of a sweep is further from 1 than this factor.
SETTLED = 1.01


@dataclass
class Link:
    """An output whose channels may be re-scaled: its ``producer`` (the conv
    computing ``relu(linear(x))``), the ``(weight, first input channel)`` of
    each of its ``consumers``, and the parameters whose ``rows`` make it
    (the producer's weight and bias by default)."""

    producer: str
    consumers: List[Tuple[str, int]]
    rows: List[str] = field(default_factory=list)

    def __post_init__(self):
        self.rows = self.rows or [
            f'{self.producer}.weight', f'{self.producer}.bias'
        ]


def _psp_links(head: nn.Module, name: str,
               followers: Dict) -> Tuple[List[Tuple[str, int]], List[Link]]:
    """(readers of the head's input, links inside the head) of an exact
    PSPHead or its low-res form; ``([], [])`` for any other head."""
    if type(head) not in (PSPHead, LowResPSPHead) or not isinstance(
            head.in_index, int) or head.input_transform is not None:
        return [], []
    pyramid = [
        f'{name}.psp_modules.{k}.1.conv' for k in range(len(head.psp_modules))
    ]
    bottleneck = f'{name}.bottleneck'
    widths = [stage[1].conv.out_channels for stage in head.psp_modules]
    classifier = [(f'{name}.conv_seg.weight', 0)]
    if type(head) is PSPHead:
        weight = f'{bottleneck}.conv.weight'
        first = head.bottleneck.conv.in_channels - sum(widths)
        last = Link(f'{bottleneck}.conv', classifier)
    else:
        # The pyramid's slice runs at pool size; ReLU follows the sum.
        weight, first = f'{bottleneck}.pooled_weight', 0
        last = Link(
            bottleneck, classifier,
            [f'{bottleneck}.conv.weight', f'{bottleneck}.conv.bias', weight])
        if type(head.bottleneck.act) is nn.ReLU and type(
                head.bottleneck.norm) in (type(None), nn.Identity):
            followers = {**followers, bottleneck: None}
    links = []
    for conv, width in zip(pyramid, widths):
        links.append(Link(conv, [(weight, first)]))
        first += width
    inputs = [(f'{c}.weight', 0) for c in pyramid + [f'{bottleneck}.conv']]
    return inputs, [
        link for link in links + [last] if link.producer in followers
    ]


def equalization_links(model: nn.Module) -> List[Link]:
    """The links of a fused segmentor (unchanged) whose readers are all
    known: RepVGG's block chain, an exact PSPHead's pyramid, bottleneck and
    classifier. A stage output a neck or another head reads keeps its
    scale; other backbones (ResNet's ReLUs inside ``forward``) give none."""
    backbone = getattr(model, 'backbone', None)
    if type(backbone) is not RepVGG or not backbone.stem.deploy:
        return []
    stages = [['backbone.stem.branch_reparam']] + [[
        f'backbone.{name}.{j}.branch_reparam'
        for j in range(len(getattr(backbone, name)))
    ] for name in backbone.stage_names]
    followers = relu_followers(model)
    neck = getattr(model, 'neck', None) is not None
    # Readers of each stage output besides the next block; None: unknown.
    outside: Dict[int, Optional[List]] = {}
    head_links = []
    for name in ('decode_head', 'auxiliary_head'):
        head = getattr(model, name, None)
        if head is None:
            continue
        inputs, links = _psp_links(head, name, followers)
        head_links += links
        index = getattr(head, 'in_index', None)
        if neck or not inputs:
            # A neck, or a head not analysed here: what it reads is off.
            used = (
                range(len(backbone.out_indices)) if neck or index is None else
                [index] if isinstance(index, int) else index)
            outside.update({backbone.out_indices[i] + 1: None for i in used})
            continue
        stage = backbone.out_indices[index] + 1  # 0: the stem
        if outside.get(stage, []) is not None:
            outside[stage] = outside.get(stage, []) + inputs
    chain = [conv for stage in stages for conv in stage]
    ends = {stage[-1]: i for i, stage in enumerate(stages) if stage}
    links = []
    for conv, after in zip(chain, chain[1:] + [None]):
        readers = [(f'{after}.weight', 0)] if after else []
        extra = outside.get(ends[conv], []) if conv in ends else []
        if extra is not None and conv in followers and readers + extra:
            links.append(Link(conv, readers + extra))
    return links + head_links


def column_ranges(weight: Tensor, groups: int) -> Tensor:
    """Per input channel, max |w| over the rows it meets (its group's)."""
    per_channel = weight.detach().abs().flatten(2).amax(2)  # (out, in/g)
    return per_channel.view(groups, -1, per_channel.shape[1]).amax(1).flatten()


def _groups(model: nn.Module, weight: str) -> int:
    return getattr(model.get_submodule(weight.rpartition('.')[0]), 'groups', 1)


def _reader_ranges(model: nn.Module, link: Link, width: int) -> Tensor:
    """The largest column range over the link's readers, per channel."""
    return torch.stack([
        column_ranges(model.get_parameter(w), _groups(model, w))[f:f + width]
        for w, f in link.consumers
    ]).amax(0)


def _parameter(model: nn.Module, name: str) -> Optional[Tensor]:
    module, _, attr = name.rpartition('.')
    return getattr(model.get_submodule(module), attr)


def _scale_link(model: nn.Module, link: Link, scales: Tensor) -> None:
    """The producer's output channel c / s_c, its readers' input c * s_c."""
    for name in link.rows:
        rows = _parameter(model, name)
        if rows is not None:
            rows.div_(scales.view((-1, ) + (1, ) * (rows.dim() - 1)))
    for name, first in link.consumers:
        weight, groups = model.get_parameter(name), _groups(model, name)
        factors = torch.ones(weight.shape[1] * groups)
        factors[first:first + len(scales)] = scales
        # Input channel g * (in/g) + i meets rows of group g, column i.
        view = weight.view(groups, len(weight) // groups, weight.shape[1], -1)
        view.mul_(factors.view(groups, 1, -1, 1))


@torch.no_grad()
def equalize(
        model: nn.Module,
        links: List[Link],
        output_max: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
    """Equalize ``links`` of ``model`` in place; returns each producer's
    scales (its output channel c is now divided by ``scales[c]``).

    Each sweep sets ``s_c = sqrt(r_c / w_c)`` (the paper's rule): ``r_c`` the
    producer's ReLU output max measured before (``output_max``), else its
    weight range; ``w_c`` its readers' largest column range. Both meet at
    ``sqrt(r_c w_c)``, which no re-scaling changes: PSP's concatenated parts
    stay consistent.
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
    """The producer's output range per channel, divided by ``done`` so far."""
    weights = torch.stack([
        _parameter(model, name).detach().abs().flatten(1).amax(1)
        for name in link.rows if name.endswith('weight')
    ]).amax(0)
    if not output_max or link.producer not in output_max:
        return weights
    seen = output_max[link.producer].float()
    seen = seen if done is None else seen / done
    active = seen > 0
    if not active.any():
        return weights
    # Never active on the data: its weights at the active channels' ratio.
    ratio = (seen[active] / weights[active].clamp_min(1e-30)).median()
    return torch.where(active, seen, weights * ratio)
