"""RepVGGBlock: the train-time block and its exact fusion into one conv."""
from functools import partial
from typing import Dict, Optional

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.utils import skip_init

from ...errors import CheckpointError
from ..reparam import fuse_conv_norm, fuse_identity_norm, sum_branches


def _bn_state(prefix: str, norm: nn.Module, weight: Tensor,
              bias: Tensor) -> Dict:
    """A BN computing ``weight * x + bias`` (sqrt(running_var + eps) = 1)."""
    return {
        prefix + 'weight': weight,
        prefix + 'bias': bias,
        prefix + 'running_mean': torch.zeros_like(bias),
        prefix + 'running_var': torch.full_like(bias, 1 - norm.eps),
        prefix + 'num_batches_tracked': torch.tensor(0, dtype=torch.long),
    }


class RepVGGBlock(BaseModule):
    """A RepVGG block: 3x3 conv+BN, 1x1 conv+BN and identity BN (same shape),
    summed; fused (``switch_to_deploy()``, ``deploy=True``): one 3x3 conv.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the 3x3 and 1x1 convs.
        dilation (int): Dilation (and padding) of the 3x3 conv.
        groups (int): Groups of both convs.
        norm_cfg (dict): Norm layer config; any BatchNorm fuses.
        act_cfg (dict): Activation after the sum.
        with_cp (bool): Use activation checkpointing in training.
        deploy (bool): Build the fused form.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 groups: int = 1,
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='ReLU'),
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[Dict] = None):
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.with_cp = with_cp
        self.deploy = deploy
        if deploy:
            self.branch_reparam = self._reparam_conv()
        else:
            conv_bn = partial(
                ConvModule,
                in_channels,
                out_channels,
                stride=stride,
                groups=groups,
                norm_cfg=norm_cfg,
                act_cfg=None)
            self.branch_3x3 = conv_bn(3, padding=dilation, dilation=dilation)
            self.branch_1x1 = conv_bn(1, padding=0)
            if in_channels == out_channels and stride == 1:
                self.branch_identity = build_norm_layer(norm_cfg,
                                                        in_channels)[1]
            else:
                self.branch_identity = None
        self.act = build_activation_layer(act_cfg)

    def _reparam_conv(self, init: bool = True) -> nn.Conv2d:
        # Without init (skip_init): fusing overwrites it, and an init would
        # draw from the global RNG of a run that fuses a copy.
        build = nn.Conv2d if init else partial(skip_init, nn.Conv2d)
        return build(
            self.in_channels,
            self.out_channels,
            3,
            stride=self.stride,
            padding=self.dilation,
            dilation=self.dilation,
            groups=self.groups,
            bias=True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Loaders that only warn (mmengine's) would leave a fused block with
        # random weights when given train-time ones: refuse in every loader.
        if self.deploy and any(
                key.startswith(prefix + 'branch_3x3.') for key in state_dict):
            raise CheckpointError(
                f'{prefix.rstrip(".")}: train-time RepVGG weights given to a '
                'fused (deploy=True) block. Use the training config (the '
                'ReparamHook fuses after loading), or convert the checkpoint '
                'with tools/reparam.py and use the config written beside it')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.act(self.branch_reparam(x))
        out = self.branch_3x3(x) + self.branch_1x1(x)
        if self.branch_identity is not None:
            out = out + self.branch_identity(x)
        return self.act(out)

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def fused_kernel_bias(self):
        """The (kernel, bias) of the single 3x3 conv this block equals."""
        if self.deploy:
            return (self.branch_reparam.weight.detach(),
                    self.branch_reparam.bias.detach())
        branches = [
            fuse_conv_norm(self.branch_3x3.conv, self.branch_3x3.norm),
            fuse_conv_norm(self.branch_1x1.conv, self.branch_1x1.norm),
        ]
        if self.branch_identity is not None:
            branches.append(
                fuse_identity_norm(self.branch_identity, self.groups, 3))
        return sum_branches(branches, kernel_size=3)

    def train_time_twin(self) -> 'RepVGGBlock':
        """A train-time block of this geometry with default BNs."""
        return RepVGGBlock(self.in_channels, self.out_channels, self.stride,
                           self.dilation, self.groups)

    def state_from_fused(self, kernel: Tensor, bias: Tensor) -> Dict:
        """A state dict for this train-time block computing a fused conv."""
        if self.deploy:
            raise ValueError('state_from_fused needs a train-time block')
        ones, zeros = torch.ones_like(bias), torch.zeros_like(bias)
        out = {'branch_3x3.conv.weight': kernel}
        out.update(
            _bn_state('branch_3x3.bn.', self.branch_3x3.norm, ones, bias))
        out['branch_1x1.conv.weight'] = kernel.new_zeros(
            *kernel.shape[:2], 1, 1)
        out.update(
            _bn_state('branch_1x1.bn.', self.branch_1x1.norm, zeros, zeros))
        if self.branch_identity is not None:
            out.update(
                _bn_state('branch_identity.', self.branch_identity, zeros,
                          zeros))
        return out

    def switch_to_deploy(self) -> None:
        """Fuse the branches into ``branch_reparam`` in place (idempotent)."""
        if self.deploy:
            return
        kernel, bias = self.fused_kernel_bias()
        conv = self._reparam_conv(init=False).to(kernel.device, kernel.dtype)
        conv.weight.data.copy_(kernel)
        conv.bias.data.copy_(bias)
        for name in ('branch_3x3', 'branch_1x1', 'branch_identity'):
            delattr(self, name)
        self.branch_reparam = conv
        self.deploy = True
