"""Where a model computes exactly ``relu(conv(x))`` with two modules.

Both hand-written kernels apply a following ReLU themselves (NNPACK in its
output transform, oneDNN's int8 conv as a post-op), so the ReLU module must
go; this is the one place that decides where that is exact.
"""
from typing import Dict, Tuple

from mmcv.cnn import ConvModule
from torch import nn

from ...models.backbones.repvgg import RepVGGBlock


def relu_followers(model: nn.Module) -> Dict[str, Tuple[nn.Module, str]]:
    """``{conv name: (owner, attribute of its ReLU)}`` for every module of
    ``model`` that computes exactly ``relu(conv(x))``.

    Two such modules are known: a fused :class:`RepVGGBlock`
    (``act(branch_reparam(x))``) and an mmcv ``ConvModule`` whose norm is
    gone or folded (``nn.Identity`` after ``fuse_conv_bn``) and whose
    activation comes after its conv in ``order`` (with no norm between,
    every such order is ``act(conv(x))``). Types are matched exactly: a
    subclass may compute something between the two, and a ReLU subclass
    may not be a ReLU. A ReLU called inside some other ``forward``
    (ResNet's blocks) cannot be seen and stays where it is.

    Args:
        model (nn.Module): Any model; not changed.

    Returns:
        dict: Conv names as ``model.named_modules()`` gives them, each with
        its owner module and the name of the ReLU attribute on it.
    """
    pairs = {}
    for name, module in model.named_modules():
        prefix = f'{name}.' if name else ''
        if type(module) is RepVGGBlock and module.deploy:
            conv, act = 'branch_reparam', 'act'
        elif (isinstance(module, ConvModule) and module.with_activation
              and (not module.with_norm or type(module.norm) is nn.Identity)
              and module.order.index('act') > module.order.index('conv')):
            conv, act = 'conv', 'activate'
        else:
            continue
        if type(getattr(module, act, None)) is nn.ReLU:
            pairs[prefix + conv] = (module, act)
    return pairs
