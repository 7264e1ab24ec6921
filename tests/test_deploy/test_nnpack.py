"""NNPACK's C entry point: precomputed kernel transforms, fused ReLU, their
life cycle (stale weights, copies), ReLU moved into Winograd convs,
and the fallback to torch's op when the entry point is unusable."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import nn

from mmseg_repvgg.benchmark.winograd_report import transform_bytes
from mmseg_repvgg.deploy.kernels import guard, nnpack, tuning
from mmseg_repvgg.deploy.kernels.guard import c_api_problem, nnpack_problem
from mmseg_repvgg.deploy.kernels.nnpack import KernelTransform, winograd_conv
from mmseg_repvgg.deploy.kernels.winograd import WinogradConv2d
from mmseg_repvgg.deploy.kernels.winograd_convs import (fuse_relus,
                                                        winograd_convs)
from mmseg_repvgg.models.backbones.repvgg import RepVGGBlock

C_API_PROBLEM = c_api_problem()
needs_c_api = pytest.mark.skipif(
    C_API_PROBLEM is not None or nnpack_problem() is not None,
    reason=f'NNPACK C entry point unusable: {C_API_PROBLEM}')


@pytest.fixture(autouse=True)
def cheap_timing(monkeypatch):
    """Choose briefly, on one thread (choices, not speed, are tested)."""
    monkeypatch.setattr(tuning, '_BUDGET_S', 0.002)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rel(out, ref):
    return ((out - ref).norm() / ref.norm()).item()


def _reference(x, weight, bias, padding, groups, relu):
    out = F.conv2d(x, weight, bias, padding=tuple(padding), groups=groups)
    return out.relu() if relu else out


@needs_c_api
@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('hw', [(13, 19), (1, 5), (8, 8)])
@pytest.mark.parametrize('groups', [1, 2, 4])
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('relu', [True, False])
def test_winograd_conv_matches_conv2d(batch, hw, groups, bias, relu):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 8, *hw, generator=gen)
    weight = torch.randn(12, 8 // groups, 3, 3, generator=gen)
    b = torch.randn(12, generator=gen) if bias else None
    out = winograd_conv(x, KernelTransform(weight, groups), b, (1, 1), relu)
    ref = _reference(x, weight, b, (1, 1), groups, relu)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-4
    if relu:
        assert out.min() >= 0 and (ref == 0).any()


@needs_c_api
@pytest.mark.parametrize('padding', [(0, 0), (2, 2), (3, 3), (4, 1)])
def test_winograd_conv_any_padding(padding):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 6, 11, 9, generator=gen)
    weight = torch.randn(5, 6, 3, 3, generator=gen)
    out = winograd_conv(x, KernelTransform(weight), None, padding)
    ref = _reference(x, weight, None, padding, 1, False)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-4


@needs_c_api
def test_winograd_conv_rejects_wrong_channels():
    transform = KernelTransform(torch.randn(4, 6, 3, 3))
    with pytest.raises(ValueError, match='6 input channels'):
        winograd_conv(torch.randn(1, 5, 8, 8), transform, None, (1, 1))


@needs_c_api
@pytest.mark.parametrize('groups', [1, 2])
def test_transform_bytes_are_nnpack_tiles(groups):
    conv = nn.Conv2d(8, 12, 3, padding=1, groups=groups).eval()
    fast = WinogradConv2d(conv, 'winograd')
    assert transform_bytes(fast) == 0  # made at the first call
    with torch.no_grad():
        fast(torch.randn(1, 8, 9, 9))
    # 8 x 8 transformed taps of 4 bytes per (output, input) channel pair.
    assert transform_bytes(fast) == 12 * (8 // groups) * 64 * 4


@needs_c_api
def test_transform_follows_loaded_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    fast = WinogradConv2d(conv, 'winograd')
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        fast(x)
        first = fast._transform
        other = nn.Conv2d(8, 8, 3, padding=1)
        fast.load_state_dict(other.state_dict())
        out = fast(x)
    assert fast._transform is not first
    assert _rel(out, other(x)) < 1e-4


@needs_c_api
def test_deepcopy_leaves_the_transform_behind():
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    fast = WinogradConv2d(conv, 'winograd', relu=True)
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        ref = fast(x)
        twin = copy.deepcopy(fast)
        assert twin._transform is None and fast._transform is not None
        assert twin.relu
        assert _rel(twin(x), ref) < 1e-6
    assert twin._transform.buffers[0].ptr != fast._transform.buffers[0].ptr


@needs_c_api
def test_profiler_sees_the_convs():
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    fast = WinogradConv2d(conv, 'winograd')
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        fast(x)
        with torch.profiler.profile() as prof:
            fast(x)
    assert nnpack.WINOGRAD_PROFILER_NAME in {
        e.key
        for e in prof.key_averages()
    }


# --- ReLU into the conv -----------------------------------------------------


def _fused_block(stride=1):
    block = RepVGGBlock(8, 8, stride=stride)
    block.switch_to_deploy()
    return block.eval()


def test_relu_moves_into_repvgg_block_and_conv_module():
    torch.manual_seed(0)
    block = _fused_block()
    module = ConvModule(8, 8, 3, padding=1, norm_cfg=dict(type='BN'))
    module.eval()
    nn.init.normal_(module.bn.running_mean)
    model = nn.Sequential(block, module, _fused_block(stride=2)).eval()
    x = torch.randn(1, 8, 12, 14)
    with torch.no_grad():
        ref = model(x)
    fast, _ = winograd_convs(model, algorithm='direct')
    assert fuse_relus(fast) == []  # nothing left to move
    # The ConvModule's BN is not folded: its ReLU must stay after the BN.
    assert type(fast[0].act) is nn.Identity and fast[0].branch_reparam.relu
    assert type(fast[1].activate) is nn.ReLU and not fast[1].conv.relu
    # The strided block's conv is not replaced: its ReLU stays.
    assert type(fast[2].act) is nn.ReLU
    module.bn = nn.Identity()  # as fuse_conv_bn leaves a folded norm
    fast, _ = winograd_convs(model, algorithm='direct')
    assert type(fast[1].activate) is nn.Identity and fast[1].conv.relu
    with torch.no_grad():
        out = fast(x)
        model_out = model(x)
    assert _rel(out, model_out) < 1e-6
    assert not torch.equal(ref, model_out)  # the BN did matter before


def test_relu_kept_when_asked():
    fast, _ = winograd_convs(_fused_block(), algorithm='direct', relu=False)
    assert type(fast.act) is nn.ReLU and not fast.branch_reparam.relu


def test_fused_relu_survives_tracing():
    # Exports trace the direct path: the ReLU must be in the graph.
    torch.manual_seed(0)
    block = _fused_block()
    fast, _ = winograd_convs(block)
    x = torch.randn(1, 8, 12, 14)
    with torch.no_grad():
        ref = block(x)
        traced = torch.jit.trace(fast, x)
        assert _rel(traced(x), ref) < 1e-6
    assert 'relu' in str(traced.inlined_graph)


# --- Fallback to torch's op -------------------------------------------------


@pytest.fixture
def no_c_api(monkeypatch):
    """NNPACK's entry point missing from the library, checked afresh."""

    def missing():
        raise AttributeError('undefined symbol: nnp_convolution_inference')

    guard.c_api_problem.cache_clear()
    monkeypatch.setattr(nnpack, '_api', missing)
    monkeypatch.setattr(guard, '_logged', set())
    # The child process's check passes: the entry point is missing here.
    monkeypatch.setattr(guard, 'child_problem', lambda module, fn: None)
    yield
    guard.c_api_problem.cache_clear()


@pytest.mark.skipif(
    nnpack_problem() is not None, reason='torch has no usable NNPACK')
def test_fallback_to_torch_op(no_c_api, log_lines):
    assert 'nnp_convolution_inference' in guard.c_api_problem()
    torch.manual_seed(0)
    model = nn.Sequential(_fused_block(), _fused_block()).eval()
    fast, _ = winograd_convs(model, algorithm='winograd')
    x = torch.randn(1, 8, 12, 14)
    with torch.no_grad():
        out, ref = fast(x), model(x)
    assert _rel(out, ref) < 1e-4
    assert transform_bytes(fast) == 0
    lines = [line for line in log_lines if 'C entry point' in line]
    assert len(lines) == 1 and 'undefined symbol' in lines[0]


def test_wrong_c_api_is_refused(monkeypatch):

    def wrong(x, transform, bias, padding, relu=False):
        return torch.zeros(1)

    monkeypatch.setattr(nnpack, '_api', lambda: None)
    monkeypatch.setattr(nnpack, 'KernelTransform', lambda w, g: None)
    monkeypatch.setattr(nnpack, 'winograd_conv', wrong)
    problem = nnpack.check_c_api()
    assert problem is not None and 'differs from F.conv2d' in problem


def test_raising_c_api_is_refused(monkeypatch):

    def broken(*args, **kwargs):
        raise nnpack.NNPackError('nnp_convolution_inference: out of memory')

    monkeypatch.setattr(nnpack, '_api', lambda: None)
    monkeypatch.setattr(nnpack, 'KernelTransform', broken)
    problem = nnpack.check_c_api()
    assert 'out of memory' in problem
