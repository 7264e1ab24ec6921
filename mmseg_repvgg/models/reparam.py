"""Re-parameterization math: fold BatchNorm into convs and merge branches.

Conv+BN folding is torch's ``fuse_conv_bn_weights``; padding and the
identity kernel are written here as neither torch nor mmcv has them for
grouped or dilated branches.
"""
import copy
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..errors import ConfigError


def is_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm with running statistics.

    Duck-typed rather than ``isinstance(_BatchNorm)`` so that torch's
    SyncBatchNorm, mmcv's ``MMSyncBN`` and any other BN subclass fuse alike.
    """
    return all(
        getattr(module, name, None) is not None
        for name in ('running_mean', 'running_var', 'eps'))


def _check_batchnorm(norm: nn.Module) -> None:
    if not is_batchnorm(norm):
        raise ConfigError(
            f'cannot fuse {type(norm).__name__} into a conv: only BatchNorm '
            'layers with running statistics (BN, SyncBN) fold into a conv. '
            "Use norm_cfg=dict(type='BN') or dict(type='SyncBN').")


def _norm_affine(norm: nn.Module) -> Tuple[Tensor, Tensor]:
    """The BN's (weight, bias), with ones/zeros when it has no affine."""
    mean = norm.running_mean
    weight = norm.weight if norm.weight is not None else torch.ones_like(mean)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(mean)
    return weight, bias


def fuse_conv_norm(conv: nn.Conv2d, norm: nn.Module) -> Tuple[Tensor, Tensor]:
    """Kernel and bias of ``norm(conv(x))`` as a single conv (eval mode)."""
    _check_batchnorm(norm)
    weight, bias = _norm_affine(norm)
    kernel, fused_bias = fuse_conv_bn_weights(conv.weight, conv.bias,
                                              norm.running_mean,
                                              norm.running_var, norm.eps,
                                              weight, bias)
    return kernel.detach(), fused_bias.detach()


def identity_kernel(channels: int, groups: int, kernel_size: int,
                    like: Tensor) -> Tensor:
    """A ``kernel_size`` conv kernel that is the identity map.

    With groups, output channel ``i`` sees only the input channels of its
    group, so its one sits at input index ``i % (channels // groups)``.
    """
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
    weight, bias = _norm_affine(norm)
    kernel = identity_kernel(
        norm.running_mean.numel(), groups, kernel_size, like=weight)
    # Reuse the conv+BN fold with a fixed identity kernel and no conv bias.
    fused_kernel, fused_bias = fuse_conv_bn_weights(kernel, None,
                                                    norm.running_mean,
                                                    norm.running_var, norm.eps,
                                                    weight, bias)
    return fused_kernel.detach(), fused_bias.detach()


def pad_to_kernel(kernel: Tensor, kernel_size: int) -> Tensor:
    """Zero-pad a smaller square kernel to ``kernel_size``, centred.

    A centred 1x1 tap of a dilated 3x3 conv (padding == dilation) reads the
    same pixel as the 1x1 conv at padding 0, so dilation does not matter.
    """
    pad = (kernel_size - kernel.shape[-1]) // 2
    return F.pad(kernel, [pad] * 4)


def sum_branches(branches: List[Tuple[Tensor, Tensor]],
                 kernel_size: int) -> Tuple[Tensor, Tensor]:
    """Add (kernel, bias) pairs of parallel branches into one conv."""
    kernel = sum(pad_to_kernel(k, kernel_size) for k, _ in branches)
    bias = sum(b for _, b in branches)
    return kernel, bias


def _can_switch(module: nn.Module) -> bool:
    return callable(getattr(module, 'switch_to_deploy', None))


def fusable_modules(model: nn.Module) -> List[str]:
    """Names of the leaf modules of ``model`` that are not fused yet.

    Containers that fuse through their children (the backbone itself) are
    left out, so each block is named once.
    """
    return [
        name for name, module in model.named_modules()
        if _can_switch(module) and not getattr(module, 'deploy', False)
        and not any(_can_switch(m) for m in list(module.modules())[1:])
    ]


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fuse every re-parameterizable module of ``model``.

    Modelled on timm's helper of the same name: any module with a
    ``switch_to_deploy()`` method is fused, whatever model holds it. Fusing
    an already fused module is a no-op.

    Args:
        model (nn.Module): The model to fuse.
        inplace (bool): Fuse ``model`` itself instead of a deep copy.
            Defaults to False.

    Returns:
        nn.Module: The fused model (``model`` itself when ``inplace``).
    """
    if not inplace:
        model = copy.deepcopy(model)
    for module in list(model.modules()):
        if _can_switch(module):
            module.switch_to_deploy()
    return model
