"""The RepVGG backbone: archs, shapes, dilation, freezing, bad input."""
import pytest
import torch
from mmseg.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg_repvgg.errors import ConfigError
from mmseg_repvgg.models import RepVGG, RepVGGBlock

ALL_ARCHS = ('A0', 'A1', 'A2', 'B0', 'B1', 'B1g2', 'B1g4', 'B2', 'B2g2',
             'B2g4', 'B3', 'B3g2', 'B3g4')
FULL = dict(strides=(2, 2, 1, 1), dilations=(1, 1, 2, 4))
FAST = dict(FULL, dilated_blocks=(0, 0, 4, 1))
TINY = dict(num_blocks=(1, 2, 5, 1), width_factor=(0.25, 0.25, 0.25, 0.5))

# Paper, Table 4 (deploy-time params including the ImageNet classifier).
PAPER_PARAMS_M = {
    'A0': 8.30,
    'A1': 12.78,
    'A2': 25.49,
    'B0': 14.33,
    'B1': 51.82,
    'B1g2': 41.36,
    'B1g4': 36.12,
    'B2': 80.31,
    'B2g4': 55.77,
    'B3': 110.96,
    'B3g4': 75.62
}


def test_registered_in_mmseg():
    model = MODELS.build(dict(type='RepVGG', arch=TINY))
    assert isinstance(model, RepVGG)


@pytest.mark.parametrize('arch', ALL_ARCHS)
def test_every_arch_shapes_and_strides(arch):
    model = RepVGG(arch, deploy=True).eval()
    a, b = RepVGG.arch_settings[arch]['width_factor'][::3]
    widths = [int(64 * a), int(128 * a), int(256 * a), int(512 * b)]
    assert model.out_channels == widths
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == widths
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 24), (8, 12), (4, 6),
                                                  (2, 3)]


@pytest.mark.parametrize('dilation_cfg', [FULL, FAST], ids=['full', 'fast'])
def test_output_stride_8(dilation_cfg):
    model = RepVGG(TINY, **dilation_cfg).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 128))
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 32), (8, 16), (8, 16),
                                                  (8, 16)]


def _block_dilations(model):
    return [[block.dilation for block in getattr(model, name)]
            for name in model.stage_names]


def test_full_dilation_dilates_every_block_of_last_two_stages():
    model = RepVGG('B2', **FULL)
    assert _block_dilations(model) == [[1] * 4, [1] * 6, [2] * 16, [4]]
    for block in model.modules():
        if isinstance(block, RepVGGBlock):
            conv3 = block.branch_3x3.conv
            assert conv3.padding == (block.dilation, ) * 2
            assert conv3.dilation == (block.dilation, ) * 2
            assert block.branch_1x1.conv.padding == (0, 0)
    assert [getattr(model, n)[0].stride for n in model.stage_names] == \
        [2, 2, 1, 1]


def test_fast_dilation_dilates_only_last_five_layers():
    model = RepVGG('B1g2', **FAST)
    assert _block_dilations(model) == [[1] * 4, [1] * 6, [1] * 12 + [2] * 4,
                                       [4]]
    dilated = [
        m for m in model.modules()
        if isinstance(m, RepVGGBlock) and m.dilation > 1
    ]
    assert len(dilated) == 5


def test_groupwise_layers_follow_the_paper():
    model = RepVGG('B1g4')
    blocks = [
        getattr(model, n)[i] for n in model.stage_names
        for i in range(len(getattr(model, n)))
    ]
    groups = [b.groups for b in blocks]
    # Global block index 1..27; even ones up to 26 are grouped.
    assert groups == [4 if i % 2 == 0 and i <= 26 else 1 for i in range(1, 28)]
    assert model.stem.groups == 1 and model.stage4[0].groups == 1
    assert model.stage1[1].branch_3x3.conv.groups == 4


@pytest.mark.parametrize('arch', sorted(PAPER_PARAMS_M))
def test_param_counts_match_paper(arch):
    model = RepVGG(arch, deploy=True)
    backbone = sum(p.numel() for p in model.parameters())
    classifier = model.out_channels[-1] * 1000 + 1000
    total_m = (backbone + classifier) / 1e6
    print(f'{arch}: backbone {backbone / 1e6:.2f}M + classifier '
          f'{classifier / 1e6:.2f}M = {total_m:.2f}M '
          f'(paper {PAPER_PARAMS_M[arch]}M)')
    assert total_m == pytest.approx(PAPER_PARAMS_M[arch], abs=0.01)


def test_identity_branch_only_when_shapes_match():
    model = RepVGG(TINY)
    assert model.stem.branch_identity is None
    assert model.stage2[0].branch_identity is None  # stride 2
    assert isinstance(model.stage2[1].branch_identity, _BatchNorm)


def test_frozen_stages_and_norm_eval():
    model = RepVGG(TINY, frozen_stages=2, norm_eval=True)
    assert model.train() is model
    frozen = [model.stem, model.stage1, model.stage2]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    assert model.stage3.training
    assert all(p.requires_grad for p in model.stage3.parameters())
    assert all(not m.training for m in model.modules()
               if isinstance(m, _BatchNorm))

    unfrozen = RepVGG(TINY, frozen_stages=0).train()
    assert not unfrozen.stem.training and unfrozen.stage1.training
    assert all(m.training for m in unfrozen.stage1.modules())


def test_norm_eval_keeps_running_stats():
    model = RepVGG(TINY, norm_eval=True).train()
    before = model.stage3[1].branch_identity.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, model.stage3[1].branch_identity.running_mean)


def test_with_cp_gives_same_gradients():
    torch.manual_seed(0)
    plain = RepVGG(TINY)
    checkpointed = RepVGG(TINY, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for model in (plain, checkpointed):
        model.train()
        sum(o.sum() for o in model(x)).backward()
    for (name, p), q in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize(
    'kwargs, match',
    [(dict(arch='B5'), 'A0, A1, A2, B0, B1, B1g2'),
     (dict(arch=dict(num_blocks=(1, 1, 1, 1))), 'width_factor'),
     (dict(strides=(2, 2, 1)), 'strides needs one value per stage'),
     (dict(dilations=(1, 1, 2, 4, 8)), 'dilations needs one value'),
     (dict(dilated_blocks=(0, 0, 4)), 'dilated_blocks needs one value'),
     (dict(dilations=(1, 1, 0, 4)), 'must be >= 1'),
     (dict(dilated_blocks=(0, 0, 4, 2)), r'dilated_blocks\[3\]=2 is imposs'),
     (dict(out_indices=(0, 4)), 'out_indices'),
     (dict(frozen_stages=5), 'frozen_stages')])
def test_bad_arguments_are_rejected_at_construction(kwargs, match):
    kwargs = dict(dict(arch='B0'), **kwargs)
    with pytest.raises(ConfigError, match=match):
        RepVGG(**kwargs)


def test_bad_arch_through_registry_names_the_choices():
    with pytest.raises(ConfigError, match='unknown RepVGG arch .B5.'):
        MODELS.build(dict(type='RepVGG', arch='B5'))


def test_fused_backbone_refuses_train_time_weights_in_any_loader():
    """mmengine's non-strict loader (mmseg's and mmdeploy's tools) would
    only warn and leave the fused convs random."""
    from mmengine.runner.checkpoint import load_state_dict

    from mmseg_repvgg.errors import CheckpointError
    train = RepVGG(arch=TINY).eval()
    fused = RepVGG(arch=TINY, deploy=True).eval()
    with pytest.raises(CheckpointError, match='stem: train-time RepVGG'):
        load_state_dict(fused, train.state_dict(), strict=False)
    with pytest.raises(CheckpointError, match='tools/reparam.py'):
        fused.load_state_dict(train.state_dict(), strict=False)
    # The fused form's own weights still load, in both loaders.
    twin = RepVGG(arch=TINY, deploy=True)
    load_state_dict(twin, fused.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin.eval()(x)[-1], fused(x)[-1])
