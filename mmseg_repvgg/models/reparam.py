"""Re-parameterization math: fold BatchNorm into convs and merge branches
(the identity kernel is written here: torch and mmcv lack it for groups)."""
import copy
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..errors import ConfigError


def is_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm with running stats (duck-typed)."""
    return all(
        getattr(module, name, None) is not None
        for name in ('running_mean', 'running_var', 'eps'))


def _check_batchnorm(norm: nn.Module) -> None:
    if not is_batchnorm(norm):
        raise ConfigError(
            f'cannot fuse {type(norm).__name__} into a conv: only BatchNorm '
            'layers with running statistics (BN, SyncBN) fold into a conv. '
            "Use norm_cfg=dict(type='BN') or dict(type='SyncBN').")


def _fold(kernel: Tensor, conv_bias: Optional[Tensor],
          norm: nn.Module) -> Tuple[Tensor, Tensor]:
    mean = norm.running_mean
    weight = norm.weight if norm.weight is not None else torch.ones_like(mean)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(mean)
    kernel, bias = fuse_conv_bn_weights(kernel, conv_bias, mean,
                                        norm.running_var, norm.eps, weight,
                                        bias)
    return kernel.detach(), bias.detach()


def fuse_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> Tuple[Tensor, Tensor]:
    """Kernel and bias of ``norm(conv(x))`` as a single conv (eval mode)."""
    _check_batchnorm(norm)
    return _fold(conv.weight, conv.bias, norm)


def identity_kernel(channels: int, groups: int, kernel_size: int,
                    like: Tensor) -> Tensor:
    """A ``kernel_size`` conv kernel that is the identity map (with groups,
    channel ``i``'s one sits at input index ``i % (channels // groups)``)."""
    in_per_group = channels // groups
    kernel = like.new_zeros(channels, in_per_group, kernel_size, kernel_size)
    centre = kernel_size // 2
    index = torch.arange(channels, device=like.device)
    kernel[index, index % in_per_group, centre, centre] = 1
    return kernel


def fuse_identity_norm(norm: nn.Module, groups: int,
                       kernel_size: int) -> Tuple[Tensor, Tensor]:
    """Kernel and bias of a BN-only identity branch as a conv."""
    _check_batchnorm(norm)
    like = norm.weight if norm.weight is not None else norm.running_mean
    return _fold(
        identity_kernel(norm.running_mean.numel(), groups, kernel_size, like),
        None, norm)


def sum_branches(branches: List[Tuple[Tensor, Tensor]],
                 kernel_size: int) -> Tuple[Tensor, Tensor]:
    """Add (kernel, bias) pairs of parallel branches into one conv, smaller
    kernels padded, centred (where a dilated 3x3 reads the 1x1's pixel)."""
    kernel = sum(
        F.pad(k, [(kernel_size - k.shape[-1]) // 2] * 4) for k, _ in branches)
    bias = sum(b for _, b in branches)
    return kernel, bias


def _can_switch(module: nn.Module) -> bool:
    return callable(getattr(module, 'switch_to_deploy', None))


def fusable_modules(model: nn.Module) -> List[str]:
    """Names of the leaf modules of ``model`` not fused yet."""
    return [
        name for name, module in model.named_modules()
        if _can_switch(module) and not getattr(module, 'deploy', False)
        and not any(_can_switch(m) for m in list(module.modules())[1:])
    ]


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fuse every module with a ``switch_to_deploy()`` (as timm's helper of
    the same name), of ``model`` itself if ``inplace``, else of a deep copy;
    fused modules stay as they are. Returns the fused model."""
    if not inplace:
        model = copy.deepcopy(model)
    for module in list(model.modules()):
        if _can_switch(module):
            module.switch_to_deploy()
    return model
