"""Where a model computes exactly ``relu(conv(x))`` with two modules: the
one place that decides where a kernel (NNPACK, oneDNN int8) may apply the
ReLU itself and its module go."""
from typing import Dict, Tuple

from mmcv.cnn import ConvModule
from torch import nn

from ...models.backbones.repvgg import RepVGGBlock


def relu_followers(model: nn.Module) -> Dict[str, Tuple[nn.Module, str]]:
    """``{conv name: (owner, ReLU attribute)}`` of the modules of ``model``
    (unchanged) computing exactly ``relu(conv(x))``: a fused
    :class:`RepVGGBlock`, an mmcv ``ConvModule`` with its norm gone or
    folded and its act after its conv. Types match exactly (a subclass may
    compute more); a ReLU inside another ``forward`` (ResNet's) is unseen."""
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
