"""Property-based tests (hypothesis): fusion and layout conversion.

* A RepVGG block and its fused 3x3 conv compute the same function for any
  channel counts, groups, stride, dilation and input size (eval mode, in
  float64 so that only a wrong formula, not rounding, can fail).
* Our state dict exported to every layout and converted back is our state
  dict again, key for key and bit for bit, for random tiny archs.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmseg_repvgg.checkpoint import (LAYOUTS, convert_to_ours, detect_layout,
                                     export_layout)
from mmseg_repvgg.models import RepVGG, RepVGGBlock

# Modest example counts keep this file to a few seconds on two cores; no
# example database is written into the repository.
PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, database=None)


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BN statistics, so every branch and fold matters.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            values = torch.randn(
                tensor.shape, generator=gen, dtype=torch.float64)
            if name.endswith('running_var'):
                values = values.abs() + 0.1
            tensor.copy_(values)
    return module.eval()


@st.composite
def block_shapes(draw):
    groups = draw(st.sampled_from([1, 2, 4]))
    in_channels = groups * draw(st.integers(1, 4))
    # Equal widths and stride 1 give the identity branch: draw it often.
    if draw(st.booleans()):
        out_channels = in_channels
    else:
        out_channels = groups * draw(st.integers(1, 4))
    return dict(
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
        stride=draw(st.sampled_from([1, 2])),
        dilation=draw(st.integers(1, 3)))


@PROPERTY_SETTINGS
@given(
    shape=block_shapes(),
    batch=st.integers(1, 2),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    seed=st.integers(0, 2**16))
def test_fused_block_equals_three_branches(shape, batch, height, width, seed):
    block = _randomize(RepVGGBlock(**shape).double(), seed)
    assert (block.branch_identity is not None) == (
        shape['in_channels'] == shape['out_channels'] and shape['stride'] == 1)
    x = torch.randn(
        batch,
        shape['in_channels'],
        height,
        width,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        expected = block(x)
        block.switch_to_deploy()
        fused = block(x)
    assert block.deploy and not hasattr(block, 'branch_3x3')
    assert fused.shape == expected.shape
    scale = expected.abs().max().item() + 1
    torch.testing.assert_close(fused, expected, rtol=1e-10, atol=1e-10 * scale)


@st.composite
def tiny_archs(draw):
    num_blocks = tuple(draw(st.integers(1, 3)) for _ in range(4))
    width_factor = tuple(
        draw(st.sampled_from([0.0625, 0.125])) for _ in range(4))
    grouped = draw(
        st.lists(st.integers(1, sum(num_blocks)), max_size=3, unique=True))
    arch = dict(num_blocks=num_blocks, width_factor=width_factor)
    if grouped:  # widths are multiples of 4: groups of 2 or 4 always fit
        arch['group_layer_map'] = {
            layer: draw(st.sampled_from([2, 4]))
            for layer in grouped
        }
    return arch


@PROPERTY_SETTINGS
@given(arch=tiny_archs(), seed=st.integers(0, 2**16))
def test_layouts_round_trip_to_ours(arch, seed):
    train_model = _randomize(RepVGG(arch).double(), seed)
    fused_model = RepVGG(arch, deploy=True).double()
    fused_model.load_state_dict(
        _fused_state(train_model.state_dict(), arch), strict=True)
    for layout in LAYOUTS:
        deploy = layout.endswith('_deploy')
        ours = (fused_model if deploy else train_model).state_dict()
        exported = export_layout(ours, layout)
        assert detect_layout(exported) == layout
        back = convert_to_ours(
            exported, RepVGG(arch, deploy=deploy), layout=layout)
        assert back.keys() == ours.keys(), layout
        for key, value in ours.items():
            assert torch.equal(back[key], value), (layout, key)


def _fused_state(state_dict: dict, arch: dict) -> dict:
    model = RepVGG(arch).double()
    model.load_state_dict(state_dict)
    model.switch_to_deploy()
    return model.state_dict()


@pytest.mark.parametrize('layout', LAYOUTS)
def test_export_renames_every_tensor(layout):
    """The round trip above is not vacuous: each layout renames keys."""
    arch = dict(num_blocks=(1, 2, 1, 1), width_factor=(0.0625, ) * 4)
    model = RepVGG(arch, deploy=layout.endswith('_deploy'))
    ours = model.state_dict()
    exported = export_layout(ours, layout)
    assert len(exported) == len(ours)
    if not layout.startswith('ours'):
        assert not set(exported) & set(ours)
