"""Stress models for int8: function-preserving re-scaling of a fused
PSPNet-RepVGG (a test helper, not part of the package).

Output channel c of a conv is multiplied by s > 0 and input channel c of
every conv that reads it by 1/s. ReLU, zero padding, average pooling,
bilinear upsampling and concatenation commute with s, so the fp32 model is
the same function, while its channel ranges spread over orders of
magnitude (what QARepVGG blames for RepVGG's post-training int8 losses).

As a script, writes a stressed deploy checkpoint of a trained one::

    python tests/test_deploy/int8_stress.py CONFIG CHECKPOINT OUT [--seed N]
"""
import argparse
from typing import List, Tuple

import torch
from torch import Tensor, nn

Pair = Tuple[nn.Conv2d, List[Tuple[nn.Conv2d, int]]]


def conv_pairs(model: nn.Module) -> List[Pair]:
    """``(producer, [(consumer, first input channel), ...])`` of a fused
    PSPNet-RepVGG: block to block, the last block to the pyramid's 1x1
    convs and the bottleneck, each pyramid conv to its slice of the
    bottleneck, the bottleneck to the classifier."""
    backbone, head = model.backbone, model.decode_head
    blocks = [backbone.stem] + [
        block for name in backbone.stage_names
        for block in getattr(backbone, name)
    ]
    convs = [block.branch_reparam for block in blocks]
    pairs: List[Pair] = [(a, [(b, 0)]) for a, b in zip(convs, convs[1:])]
    pyramid = [stage[1].conv for stage in head.psp_modules]
    bottleneck = head.bottleneck.conv
    pairs.append(
        (convs[-1], [(conv, 0) for conv in pyramid] + [(bottleneck, 0)]))
    offset = convs[-1].out_channels
    for conv in pyramid:
        pairs.append((conv, [(bottleneck, offset)]))
        offset += conv.out_channels
    pairs.append((bottleneck, [(head.conv_seg, 0)]))
    return pairs


def _divide_inputs(conv: nn.Conv2d, first: int, scales: Tensor) -> None:
    """Input channels ``first ..`` of ``conv`` (grouped or not) / scales."""
    per_group = conv.weight.shape[1]
    rows = conv.out_channels // conv.groups
    for index, scale in enumerate(scales.tolist()):
        group, column = divmod(first + index, per_group)
        conv.weight[group * rows:(group + 1) * rows, column] /= scale


@torch.no_grad()
def stress(model: nn.Module,
           seed: int = 0,
           share: float = 0.25,
           decades: tuple = (1.0, 3.0)) -> nn.Module:
    """Re-scale ``share`` of each producer's output channels (in place) by
    ``10 ** +-U(decades)``, up or down at random; returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    for producer, consumers in conv_pairs(model):
        n = producer.out_channels
        chosen = torch.rand(n, generator=gen) < share
        low, high = decades
        exponent = low + (high - low) * torch.rand(n, generator=gen)
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        scales = torch.where(chosen, 10.0**(sign * exponent),
                             torch.ones(n, dtype=torch.float64)).float()
        producer.weight.mul_(scales.view(-1, 1, 1, 1))
        producer.bias.mul_(scales)
        for conv, first in consumers:
            _divide_inputs(conv, first, scales)
    return model


def main() -> None:
    from mmseg_repvgg.checkpoint import load_segmentor
    from mmseg_repvgg.config import load_config
    from mmseg_repvgg.deploy.artifacts import (deploy_meta,
                                               save_deploy_checkpoint)
    from mmseg_repvgg.models import check_fused_equal, fuse_segmentor
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='the stressed deploy checkpoint (.pth)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    cfg = load_config(args.config)
    model, ckpt = load_segmentor(cfg, args.checkpoint)
    fused, report = fuse_segmentor(model)
    stressed = stress(fused, args.seed)
    print('fp32 logits, max abs and relative difference: '
          f'{check_fused_equal(model, stressed, (1, 3, 128, 256), 1e-5)}')
    meta = deploy_meta(report, f'{args.checkpoint} stressed (seed '
                       f'{args.seed})', ckpt.get('meta'))
    print(save_deploy_checkpoint(stressed, None, args.out, meta)[0])


if __name__ == '__main__':
    main()
