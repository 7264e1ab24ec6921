"""Where a model computes exactly ``relu(conv(x))`` with two modules: the
one place that decides where a kernel (NNPACK, oneDNN int8) may apply the
ReLU itself and its module go."""
from typing import Dict, Tuple

from mmcv.cnn import ConvModule
from torch import nn

from ...models.backbones.repvgg import RepVGGBlock


def relu_followers(model: nn.Module) -> Dict[str, Tuple[nn.Module, str]]:
    """The modules of ``model`` that compute exactly ``relu(conv(x))``: a
    fused :class:`RepVGGBlock`, and an mmcv ``ConvModule`` with its norm
    gone or folded and its activation after its conv. Types match exactly
    (a subclass may compute more); a ReLU inside some other ``forward``
    (ResNet's blocks) cannot be seen.

    Args:
        model (nn.Module): Any model; not changed.

    Returns:
        dict: ``{conv name: (owner module, attribute of its ReLU)}``.
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
