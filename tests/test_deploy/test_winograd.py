"""Winograd (NNPACK) convs: every candidate exact, the per-shape chooser and
its cache, forced choices, model conversion and the fallback to direct."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_repvgg.benchmark.winograd_report import choices_table
from mmseg_repvgg.deploy.kernels import guard, tuning
from mmseg_repvgg.deploy.kernels.guard import nnpack_problem
from mmseg_repvgg.deploy.kernels.space_to_batch import space_to_batch_conv
from mmseg_repvgg.deploy.kernels.winograd import (WinogradConv2d,
                                                  ineligible_reason,
                                                  nnpack_conv)
from mmseg_repvgg.deploy.kernels.winograd_convs import winograd_convs
from mmseg_repvgg.models import RepVGG

NNPACK_PROBLEM = nnpack_problem()
needs_nnpack = pytest.mark.skipif(
    NNPACK_PROBLEM is not None, reason=f'NNPACK unusable: {NNPACK_PROBLEM}')


@pytest.fixture(autouse=True)
def cheap_timing(monkeypatch):
    """Time candidates briefly, on one thread: these tests check choices,
    not speed, and tiny convs on two threads of a loaded machine wait for
    each other's time slices."""
    monkeypatch.setattr(tuning, '_BUDGET_S', 0.002)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_check(monkeypatch):
    """Forget the cached NNPACK check and its logged line, before and after
    (the patched op this test installs must not leak into other tests).
    The child-process probe passes: these tests are about what this
    process sees (tests/test_deploy/test_kernel_guard.py covers the child)."""
    guard.nnpack_problem.cache_clear()
    monkeypatch.setattr(guard, '_logged', set())
    monkeypatch.setattr(guard, 'child_problem', lambda module, fn: None)
    yield
    guard.nnpack_problem.cache_clear()


@pytest.fixture
def fake_nnpack(monkeypatch, fresh_check):
    """An 'NNPACK' op made of F.conv2d, so that the chooser's logic runs
    on any machine. ``fake_nnpack['wrong'] = True`` makes it wrong (+1) on
    inputs wider than the check's (13), ``'raise'`` makes it raise there.
    """
    state = dict(calls=0, wrong=False, exc=False)
    # The fake stands in for torch's op, which Winograd uses only where
    # NNPACK's C entry point is unusable: make it so, without its log line.
    monkeypatch.setattr(guard, 'c_api_problem', lambda: 'off in this test')
    guard._logged.add('c_api')

    def op(x, weight, bias, padding, stride=(1, 1)):
        state['calls'] += 1
        out = F.conv2d(x, weight, bias, padding=tuple(padding))
        if x.shape[-1] > 13 and state['exc']:
            raise RuntimeError('NNPACK SpatialConvolution_updateOutput failed')
        if x.shape[-1] > 13 and state['wrong']:
            out = out + 1
        return out

    monkeypatch.setattr(
        torch, '_nnpack_spatial_convolution', op, raising=False)
    monkeypatch.setattr(torch.backends.nnpack, 'is_available', lambda: True)
    assert nnpack_problem() is None
    state['calls'] = 0  # count the calls after the check's
    return state


def _rel(out, ref):
    return ((out - ref).norm() / ref.norm()).item()


def _conv(cin=8, cout=12, groups=1, dilation=1, padding=None, bias=True):
    torch.manual_seed(0)
    pad = dilation if padding is None else padding
    return nn.Conv2d(
        cin, cout, 3, padding=pad, dilation=dilation, groups=groups,
        bias=bias).eval()


# --- Each candidate against F.conv2d ---------------------------------------


@needs_nnpack
@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('hw', [(13, 19), (8, 8), (1, 5)])
@pytest.mark.parametrize('groups', [1, 2, 4])
@pytest.mark.parametrize('bias', [True, False])
def test_winograd_matches_conv2d(batch, hw, groups, bias):
    conv = _conv(groups=groups, bias=bias)
    x = torch.randn(batch, 8, *hw)
    with torch.no_grad():
        out = WinogradConv2d(conv, algorithm='winograd')(x)
        ref = F.conv2d(x, conv.weight, conv.bias, padding=1, groups=groups)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-4


@needs_nnpack
@pytest.mark.parametrize('padding', [0, 2, 3, (4, 1)])
def test_winograd_any_padding(padding):
    # NNPACK refuses padding >= 3 itself; the rest is padded explicitly.
    conv = _conv(padding=padding)
    x = torch.randn(1, 8, 9, 11)
    with torch.no_grad():
        out = WinogradConv2d(conv, algorithm='winograd')(x)
        ref = conv._conv_forward(x, conv.weight, conv.bias)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-4


@needs_nnpack
@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('hw', [(13, 19), (16, 16), (9, 6)])
@pytest.mark.parametrize('dilation', [2, 3, 4])
@pytest.mark.parametrize('groups', [1, 2])
@pytest.mark.parametrize('bias', [True, False])
def test_s2b_matches_dilated_conv2d(batch, hw, dilation, groups, bias):
    conv = _conv(groups=groups, dilation=dilation, bias=bias)
    x = torch.randn(batch, 8, *hw)
    with torch.no_grad():
        out = WinogradConv2d(conv, algorithm='winograd_s2b')(x)
        ref = F.conv2d(
            x,
            conv.weight,
            conv.bias,
            padding=dilation,
            dilation=dilation,
            groups=groups)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-4


@needs_nnpack
@pytest.mark.parametrize('padding', [0, 1, 3, 5])
def test_s2b_padding_other_than_dilation(padding):
    conv = _conv(dilation=2, padding=padding)
    x = torch.randn(1, 8, 13, 11)
    with torch.no_grad():
        out = WinogradConv2d(conv, algorithm='winograd_s2b')(x)
        ref = conv._conv_forward(x, conv.weight, conv.bias)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-4


@pytest.mark.parametrize('dilation,padding',
                         [((2, 3), (2, 3)), ((4, 2), (1, 2)),
                          ((3, 3), (5, 0))])
@pytest.mark.parametrize('hw', [(13, 19), (12, 12)])
def test_space_to_batch_is_exact(dilation, padding, hw):
    # The rearrangement alone, with F.conv2d as the undilated conv: it
    # moves values without arithmetic, so only summation order differs.
    def direct(x, weight, bias, pad, groups):
        return F.conv2d(x, weight, bias, padding=pad, groups=groups)

    torch.manual_seed(0)
    x = torch.randn(2, 4, *hw)
    weight = torch.randn(6, 2, 3, 3)
    bias = torch.randn(6)
    out = space_to_batch_conv(
        x, weight, bias, padding, dilation, groups=2, conv=direct)
    ref = F.conv2d(
        x, weight, bias, padding=padding, dilation=dilation, groups=2)
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-6


@needs_nnpack
def test_nnpack_conv_groups_split():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7, 9)
    weight = torch.randn(9, 2, 3, 3)
    out = nnpack_conv(x, weight, None, (1, 1), groups=3)
    assert _rel(out, F.conv2d(x, weight, padding=1, groups=3)) < 1e-4


# --- What is replaced ------------------------------------------------------


@pytest.mark.parametrize(
    'conv', [
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 4, 1),
        nn.Conv2d(4, 4, 5, padding=2),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode='reflect'),
        nn.Conv2d(4, 4, 3, padding='same'),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
    ],
    ids=['strided', '1x1', '5x5', 'reflect', 'same', 'depthwise'])
def test_ineligible_convs(conv):
    assert ineligible_reason(conv) is not None
    with pytest.raises(ValueError, match='cannot run this conv'):
        WinogradConv2d(conv)


def test_conv_attributes_and_parameters_shared():
    conv = _conv(groups=2, dilation=2)
    module = WinogradConv2d(conv)
    assert isinstance(module, nn.Conv2d)
    for name in ('in_channels', 'out_channels', 'kernel_size', 'stride',
                 'padding', 'dilation', 'groups', 'padding_mode'):
        assert getattr(module, name) == getattr(conv, name)
    assert module.weight is conv.weight and module.bias is conv.bias
    assert module.state_dict().keys() == conv.state_dict().keys()
    assert module.candidates == ('direct', 'winograd_s2b')
    assert 'algorithm=auto' in repr(module)


@pytest.mark.parametrize('dilation,algorithm', [(1, 'winograd_s2b'),
                                                (2, 'winograd'),
                                                (1, 'fastest')])
def test_forced_algorithm_must_be_a_candidate(dilation, algorithm):
    with pytest.raises(ValueError, match='algorithm must be'):
        WinogradConv2d(_conv(dilation=dilation), algorithm=algorithm)


# --- The chooser and its cache ---------------------------------------------


@pytest.mark.parametrize('dilation,groups', [(1, 1), (1, 2), (2, 1), (4, 2)])
@pytest.mark.parametrize('mode', [torch.no_grad, torch.inference_mode])
def test_auto_choice_is_right_and_recorded(fake_nnpack, dilation, groups,
                                           mode):
    conv = _conv(groups=groups, dilation=dilation)
    module = WinogradConv2d(conv)
    x = torch.randn(1, 8, 13, 19)
    with mode():
        out = module(x)
        ref = conv(x)
    assert _rel(out, ref) < 1e-4
    entry = module.choices[(1, 8, 13, 19)]
    assert entry['choice'] in module.candidates
    assert set(entry['ms']) == set(module.candidates)
    assert all(isinstance(ms, float) for ms in entry['ms'].values())
    assert 'rejected' not in entry


@needs_nnpack
@pytest.mark.parametrize('dilation,groups', [(1, 1), (1, 2), (2, 2)])
def test_auto_choice_real_nnpack(dilation, groups):
    conv = _conv(groups=groups, dilation=dilation)
    module = WinogradConv2d(conv)
    x = torch.randn(2, 8, 13, 19)
    with torch.inference_mode():
        outs = [module(x), module(x)]
        ref = conv(x)
    for out in outs:
        assert _rel(out, ref) < 1e-4
    assert module.choices[(2, 8, 13, 19)]['choice'] in module.candidates


def test_choice_cached_per_shape(fake_nnpack, monkeypatch):
    measured = []
    measure = WinogradConv2d._measure

    def counting(self, x):
        measured.append(tuple(x.shape))
        return measure(self, x)

    monkeypatch.setattr(WinogradConv2d, '_measure', counting)
    module = WinogradConv2d(_conv())
    small, large = torch.randn(1, 8, 9, 9), torch.randn(1, 8, 13, 19)
    with torch.no_grad():
        for x in (small, small, large, small, large):
            module(x)
    assert measured == [(1, 8, 9, 9), (1, 8, 13, 19)]
    assert set(module.choices) == {(1, 8, 9, 9), (1, 8, 13, 19)}

    # A cached forward runs the chosen algorithm once, nothing else.
    module.choices[(1, 8, 9, 9)]['choice'] = 'winograd'
    calls = fake_nnpack['calls']
    with torch.no_grad():
        module(small)
    assert fake_nnpack['calls'] == calls + 1


@pytest.mark.parametrize('algorithm', ['direct', 'winograd'])
def test_forced_choice(fake_nnpack, algorithm):
    conv = _conv(groups=2)
    module = WinogradConv2d(conv, algorithm=algorithm)
    x = torch.randn(1, 8, 13, 19)
    with torch.no_grad():
        out = module(x)
        module(x)
    assert _rel(out, conv(x)) < 1e-4
    # Two groups: two calls a forward when forced, none when direct.
    assert fake_nnpack['calls'] == (4 if algorithm == 'winograd' else 0)
    assert module.choices == {(1, 8, 13, 19): dict(choice=algorithm, ms={})}
    module.algorithm = 'auto'
    assert module.choices == {}


def test_inputs_that_run_direct(fake_nnpack):
    conv = _conv()
    module = WinogradConv2d(conv, algorithm='winograd')
    x = torch.randn(1, 8, 13, 19)
    inputs = [
        x.contiguous(memory_format=torch.channels_last),  # kept for oneDNN
        x[0],  # unbatched
    ]
    with torch.no_grad():
        for inp in inputs:
            assert _rel(module(inp), conv(inp)) < 1e-6
        conv.double()  # shared parameters: the module is float64 too
        assert module.weight.dtype == torch.float64
        out = module(x.double())
        assert out.dtype == torch.float64
        assert _rel(out, conv(x.double())) < 1e-12
    assert fake_nnpack['calls'] == 0
    assert module.choices == {}


# --- Fallback when NNPACK is missing or wrong ------------------------------


def _two_conv_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2)).eval()


def _check_fallback(log_lines, algorithm='auto'):
    model = _two_conv_model()
    fast, names = winograd_convs(model, algorithm=algorithm)
    assert names == ['0', '2']
    x = torch.randn(1, 8, 13, 19)
    with torch.no_grad():
        outs = [fast(x), fast(x), fast(x[:, :, :9])]
        refs = [model(x), model(x), model(x[:, :, :9])]
    for out, ref in zip(outs, refs):
        assert _rel(out, ref) < 1e-6  # direct: the same computation
    assert all(not row['shape'] for row in choices_table(fast))
    lines = [m for m in log_lines if 'NNPACK' in m]
    assert len(lines) == 1, log_lines
    assert 'run direct' in lines[0]
    return lines[0]


def test_fallback_when_op_missing(monkeypatch, fresh_check, log_lines):
    monkeypatch.delattr(torch, '_nnpack_spatial_convolution', raising=False)
    assert 'no torch._nnpack_spatial_convolution' in nnpack_problem()
    _check_fallback(log_lines)


@pytest.mark.parametrize('algorithm', ['auto', 'winograd'])
def test_fallback_when_op_wrong(monkeypatch, fresh_check, log_lines,
                                algorithm):

    def wrong(x, weight, bias, padding, stride=(1, 1)):
        return F.conv2d(x, weight, bias, padding=tuple(padding)) * 1.01

    monkeypatch.setattr(
        torch, '_nnpack_spatial_convolution', wrong, raising=False)
    monkeypatch.setattr(torch.backends.nnpack, 'is_available', lambda: True)
    assert 'relative error' in (nnpack_problem() or '')
    line = _check_fallback(log_lines, algorithm)
    assert 'relative error' in line


def test_fallback_when_op_raises(monkeypatch, fresh_check, log_lines):

    def broken(*args, **kwargs):
        raise RuntimeError('NNPACK SpatialConvolution_updateOutput failed')

    monkeypatch.setattr(
        torch, '_nnpack_spatial_convolution', broken, raising=False)
    monkeypatch.setattr(torch.backends.nnpack, 'is_available', lambda: True)
    assert 'raised RuntimeError' in nnpack_problem()
    _check_fallback(log_lines)


def test_fallback_when_unavailable(monkeypatch, fresh_check, log_lines):
    monkeypatch.setattr(torch.backends.nnpack, 'is_available', lambda: False)
    assert 'is_available() is False' in nnpack_problem()
    _check_fallback(log_lines)


@pytest.mark.parametrize('failure', ['wrong', 'exc'])
def test_candidate_wrong_at_one_shape_is_rejected(fake_nnpack, log_lines,
                                                  failure):
    # The check passes (its input is 13 wide), this layer's shape fails.
    fake_nnpack[failure] = True
    assert nnpack_problem() is None
    conv = _conv()
    module = WinogradConv2d(conv)
    x = torch.randn(1, 8, 13, 19)
    with torch.no_grad():
        outs = [module(x), module(x)]
        ref = conv(x)
    for out in outs:
        assert _rel(out, ref) < 1e-6
    entry = module.choices[(1, 8, 13, 19)]
    assert entry['choice'] == 'direct'
    assert set(entry['rejected']) == {'winograd'}
    assert len([m for m in log_lines if 'rejected' in m]) == 1


# --- Whole models ----------------------------------------------------------


class _SubConv(nn.Conv2d):
    pass


def _tiny_model():
    torch.manual_seed(0)
    shared = nn.Conv2d(8, 8, 3, padding=1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0: yes
        nn.ReLU(),
        shared,  # 2: yes (also at 10)
        nn.Conv2d(8, 8, 3, padding=1, groups=2),  # 3: yes
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),  # 4: yes
        nn.Conv2d(8, 8, 3, padding=4, dilation=4, groups=2),  # 5: yes
        nn.Conv2d(8, 8, 3, stride=2, padding=1),  # 6: strided, no
        nn.Conv2d(8, 8, 1),  # 7: 1x1, no
        nn.Conv2d(8, 8, 3, padding=1, padding_mode='reflect'),  # 8: no
        _SubConv(8, 8, 3, padding=1),  # 9: subclass, no
        shared,  # 10
    ).eval()


@pytest.mark.parametrize('mode', [torch.no_grad, torch.inference_mode])
def test_winograd_convs_keeps_outputs(fake_nnpack, mode):
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast, names = winograd_convs(model)
    assert names == ['0', '2', '3', '4', '5', '10']
    assert fast is not model
    assert fast[2] is fast[10] and isinstance(fast[2], WinogradConv2d)
    for i in (6, 7, 8, 9):
        assert type(fast[i]) is type(model[i])
    # The source model is untouched.
    assert all(type(m) is not WinogradConv2d for m in model.modules())
    assert all(
        torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert fast.state_dict().keys() == model.state_dict().keys()

    x = torch.randn(1, 3, 13, 19)
    with mode():
        out, ref = fast(x), model(x)
    assert _rel(out, ref) < 1e-4

    rows = choices_table(fast)
    # The shared conv runs at two shapes (before and after the strided one).
    assert [row['name'] for row in rows] == ['0', '2', '2', '3', '4', '5']
    assert rows[2]['shape'] == (1, 8, 7, 10)
    row = rows[4]
    assert row['shape'] == (1, 8, 13, 19)
    assert row['dilation'] == (2, 2) and row['groups'] == 1
    assert row['in_channels'] == row['out_channels'] == 8
    assert row['choice'] in ('direct', 'winograd_s2b')
    assert isinstance(row['direct_ms'], float)
    assert isinstance(row['winograd_ms'], float)


def test_winograd_convs_inplace_and_forced(fake_nnpack):
    model = _tiny_model()
    fast, names = winograd_convs(model, inplace=True, algorithm='winograd')
    assert fast is model and len(names) == 6
    assert fast[4].algorithm == 'winograd_s2b'
    assert fast[3].algorithm == 'winograd'
    rows = choices_table(fast)
    assert all(row['shape'] is None for row in rows)
    with pytest.raises(ValueError, match='algorithm must be'):
        winograd_convs(model, algorithm='winograd_s2b')


def test_winograd_convs_on_a_single_conv():
    conv = _conv()
    fast, names = winograd_convs(conv)
    assert names == [''] and isinstance(fast, WinogradConv2d)
    assert fast.weight is not conv.weight  # a copy


@needs_nnpack
def test_fused_repvgg_backbone():
    torch.manual_seed(0)
    groups = {2: 2, 4: 2, 6: 2}  # global block index: groups, as B1g2's
    arch = dict(
        num_blocks=(1, 2, 2, 1),
        width_factor=(0.25, 0.25, 0.25, 0.5),
        group_layer_map=groups)
    model = RepVGG(
        arch, strides=(2, 2, 1, 1), dilations=(1, 1, 2, 4),
        deploy=True).eval()
    fast, names = winograd_convs(model)
    dilations = {fast.get_submodule(n).dilation for n in names}
    assert dilations == {(1, 1), (2, 2), (4, 4)}
    x = torch.randn(1, 3, 52, 76)
    with torch.inference_mode():
        outs, refs = fast(x), model(x)
    for out, ref in zip(outs, refs):
        assert _rel(out, ref) < 1e-4
    assert len(choices_table(fast)) == len(names)
