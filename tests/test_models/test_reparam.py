"""Fusion of the train-time branches into one 3x3 conv is exact."""
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg_repvgg.compare import relative_error
from mmseg_repvgg.errors import ConfigError
from mmseg_repvgg.models import (RepVGG, RepVGGBlock, fusable_modules,
                                 reparameterize_model)
from mmseg_repvgg.models.reparam import identity_kernel

ALL_ARCHS = ('A0', 'A1', 'A2', 'B0', 'B1', 'B1g2', 'B1g4', 'B2', 'B2g2',
             'B2g4', 'B3', 'B3g2', 'B3g4')
FULL = dict(strides=(2, 2, 1, 1), dilations=(1, 1, 2, 4))
FAST = dict(FULL, dilated_blocks=(0, 0, 4, 1))
TINY = dict(num_blocks=(1, 2, 5, 1), width_factor=(0.25, 0.25, 0.25, 0.5))


def randomize_bn(model, seed=0):
    """Give every BN non-trivial statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.5)
    return model


def assert_fused_equal(model, x):
    model.eval()
    with torch.no_grad():
        expected = model(x)
        fused = reparameterize_model(model)
        actual = fused(x)
    for e, a in zip(expected, actual):
        assert e.shape == a.shape
        assert relative_error(e, a)[1] < 1e-5
    return fused


@pytest.mark.parametrize('dilation', [FULL, FAST], ids=['full', 'fast'])
@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_fusion_exact_on_every_arch(arch, dilation):
    torch.manual_seed(0)
    model = randomize_bn(RepVGG(arch, **dilation))
    # Odd input size: padding and dilation must line up at the borders.
    fused = assert_fused_equal(model, torch.randn(1, 3, 37, 45))
    assert fusable_modules(fused) == []


@pytest.mark.parametrize('groups', [1, 2, 4])
@pytest.mark.parametrize('stride, dilation', [(1, 1), (2, 1), (1, 2), (1, 3)])
def test_block_fusion_exact(groups, stride, dilation):
    torch.manual_seed(1)
    block = randomize_bn(
        RepVGGBlock(8, 8, stride=stride, dilation=dilation, groups=groups))
    assert (block.branch_identity is not None) == (stride == 1)
    assert_fused_equal(block, torch.randn(2, 8, 13, 11))


def test_sync_bn_config_fuses():
    model = randomize_bn(RepVGG(TINY, norm_cfg=dict(type='SyncBN')))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    fused = assert_fused_equal(model, torch.randn(1, 3, 32, 32))
    assert not any(isinstance(m, _BatchNorm) for m in fused.modules())


def test_non_batchnorm_cannot_fuse():
    block = RepVGGBlock(4, 4, norm_cfg=dict(type='GN', num_groups=2))
    with pytest.raises(ConfigError, match='only BatchNorm'):
        block.switch_to_deploy()
    assert not block.deploy  # nothing half-fused


def test_reparameterize_copies_by_default_and_is_idempotent():
    model = RepVGG(TINY)
    fused = reparameterize_model(model)
    assert fused is not model
    assert fusable_modules(model) != [] and fusable_modules(fused) == []
    weight = fused.stage3[1].branch_reparam.weight.clone()
    again = reparameterize_model(fused, inplace=True)
    assert again is fused
    assert torch.equal(weight, fused.stage3[1].branch_reparam.weight)
    model.switch_to_deploy()
    assert model.deploy and fusable_modules(model) == []


def test_fused_state_dict_loads_into_deploy_model():
    model = randomize_bn(RepVGG(TINY, **FAST)).eval()
    fused = reparameterize_model(model)
    deploy = RepVGG(TINY, deploy=True, **FAST).eval()
    deploy.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(1, 3, 33, 35)
    with torch.no_grad():
        assert relative_error(model(x)[-1], deploy(x)[-1])[1] < 1e-5
    assert not any(
        isinstance(m, _BatchNorm) or 'branch_1x1' in n
        or 'branch_identity' in n for n, m in deploy.named_modules())


def test_identity_kernel_respects_groups():
    kernel = identity_kernel(6, 3, 3, like=torch.zeros(1))
    x = torch.randn(1, 6, 5, 5)
    out = nn.functional.conv2d(x, kernel, padding=1, groups=3)
    assert torch.equal(out, x)


def test_fusable_modules_names_blocks_only():
    model = RepVGG(TINY)
    names = fusable_modules(model)
    assert names[0] == 'stem' and 'stage3.2' in names
    assert '' not in names  # the backbone itself is not listed
    assert len(names) == 1 + sum(TINY['num_blocks'])


def test_fusing_does_not_draw_from_the_global_rng():
    model = RepVGG(TINY)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    reparameterize_model(model)
    assert torch.equal(torch.rand(4), expected)
