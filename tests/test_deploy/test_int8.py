"""int8 convs by oneDNN: one conv against fp32, and a whole fused PSPNet.

The tests run with the activation bits this machine needs (8 with VNNI, 7
without); ``test_non_vnni_path_in_a_subprocess`` runs them again with
oneDNN capped to AVX2, so a VNNI machine proves the 7-bit path too.
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mmseg_repvgg.compare import relative_error
from mmseg_repvgg.deploy.kernels import guard, onednn_int8
from mmseg_repvgg.deploy.kernels.int8 import (Int8Conv2d, activation_qparams,
                                              calibrate_activation_ranges,
                                              quantizable_convs, quantize_int8,
                                              weight_qparams,
                                              why_int8_unavailable)
from mmseg_repvgg.deploy.kernels.psp_lowres import lowres_psp_heads
from mmseg_repvgg.deploy.machine import machine
from mmseg_repvgg.deploy.steps import fuse_model
from mmseg_repvgg.errors import ConfigError
from mmseg_repvgg.models import segmentor_logits

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available()
    or not hasattr(torch.ops.onednn, 'qconv_pointwise'),
    reason='int8 convs need oneDNN (x86 CPUs)')


def test_activation_qparams_cover_the_range_and_zero():
    scale, zero_point = activation_qparams(0.0, 5.1)
    assert (scale, zero_point) == (pytest.approx(0.02), 0)  # after a ReLU
    scale, zero_point = activation_qparams(-1.0, 3.0)
    assert scale == pytest.approx(4 / 255) and zero_point == 64
    scale, zero_point = activation_qparams(2.0, 4.0)  # 0 stays exact
    assert scale == pytest.approx(4 / 255) and zero_point == 0
    assert activation_qparams(0.0, 0.0) == (1.0, 0)
    # 7 bits (CPUs without VNNI): the same range over 0..127.
    scale, zero_point = activation_qparams(-1.0, 3.0, bits=7)
    assert scale == pytest.approx(4 / 127) and zero_point == 32
    with pytest.raises(ValueError, match='bits'):
        activation_qparams(0.0, 1.0, bits=9)


def test_weight_qparams_are_per_output_channel():
    weight = torch.randn(4, 3, 3, 3)
    weight[1] *= 100  # one wide channel must not coarsen the others
    weight[2] = 0
    qweight, scales = weight_qparams(weight)
    assert qweight.dtype == torch.int8 and qweight.abs().max() == 127
    assert scales.shape == (4, ) and scales[2] == 1  # a zero channel
    restored = qweight.float() * scales.view(-1, 1, 1, 1)
    for channel in (0, 1, 3):
        assert relative_error(weight[channel], restored[channel])[1] < 1 / 127


@pytest.mark.parametrize('stride,groups,dilation,relu', [(1, 1, 1, False),
                                                         (2, 1, 1, True),
                                                         (1, 2, 1, False),
                                                         (1, 1, 2, True),
                                                         (2, 4, 1, True)])
def test_int8_conv_matches_fp32(stride, groups, dilation, relu):
    torch.manual_seed(0)
    conv = nn.Conv2d(
        16, 24, 3, stride, padding=dilation, dilation=dilation,
        groups=groups).eval()
    x = torch.randn(2, 16, 12, 20)  # NCHW in: converted inside
    int8 = Int8Conv2d(conv, (float(x.min()), float(x.max())), relu)
    with torch.inference_mode():
        expected = conv(x)
        expected = expected.relu() if relu else expected
        actual = int8(x)
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    error = relative_error(expected, actual)[1]
    assert 0 < error < 0.03  # quantized, so never exact
    assert int8.activation_bits == machine().int8_activation_bits
    assert int8.weight_int8.dtype == torch.int8
    assert (int8.kernel_size, int8.stride,
            int8.dilation) == (conv.kernel_size, conv.stride, conv.dilation)


def test_int8_conv_refuses_other_padding():
    conv = nn.Conv2d(8, 8, 3, padding=1, padding_mode='reflect')
    with pytest.raises(ConfigError, match='zero padding'):
        Int8Conv2d(conv, (0.0, 1.0))


@pytest.fixture
def fused_model(tiny_model):
    return fuse_model(tiny_model, 'full')


def calibrate(model, batches):
    with torch.inference_mode():
        return calibrate_activation_ranges(
            model, batches, lambda x: segmentor_logits(model, x))


def test_calibration_records_min_and_max_over_batches(fused_model):
    names = quantizable_convs(fused_model)
    # The image conv (27 MACs per output) and the classifier stay fp32.
    assert 'backbone.stem.branch_reparam' not in names
    assert not [n for n in names if n.endswith('conv_seg')]
    assert 'backbone.stage1.0.branch_reparam' in names
    inputs = {}
    conv = dict(fused_model.named_modules())[names[0]]
    handle = conv.register_forward_pre_hook(
        lambda module, args: inputs.setdefault(len(inputs), args[0].clone()))
    batches = [torch.randn(1, 3, 32, 64), 3 * torch.randn(1, 3, 32, 64)]
    ranges = calibrate(fused_model, batches)
    handle.remove()
    seen = torch.cat([x.flatten() for x in inputs.values()])
    assert len(inputs) == 2 and set(ranges) == set(names)
    assert ranges[names[0]] == (float(seen.min()), float(seen.max()))
    with pytest.raises(ConfigError, match='at least one batch'):
        calibrate(fused_model, [])


@pytest.mark.parametrize('lowres', [False, True])
def test_quantized_segmentor_is_close_to_fp32(fused_model, lowres):
    model = copy.deepcopy(fused_model)
    if lowres:
        lowres_psp_heads(model)
    ranges = calibrate(model, [torch.randn(2, 3, 32, 64)])
    quantized, names = quantize_int8(model, ranges)
    modules = dict(quantized.named_modules())
    assert names and all(isinstance(modules[n], Int8Conv2d) for n in names)
    # The copy is quantized, the source model is not.
    assert not any(isinstance(m, Int8Conv2d) for m in model.modules())
    # A fused RepVGG block's ReLU runs in the kernel.
    block = modules['backbone.stage1.0']
    assert isinstance(block.act, nn.Identity)
    assert block.branch_reparam.attr == 'relu'
    x = torch.randn(1, 3, 32, 64)
    with torch.inference_mode():
        expected = segmentor_logits(model, x)
        actual = segmentor_logits(quantized, x)
    assert 0 < relative_error(expected, actual)[1] < 0.2
    agree = (expected.argmax(1) == actual.argmax(1)).float().mean()
    assert agree > 0.9


def test_quantize_needs_calibrated_convs(fused_model):
    with pytest.raises(ConfigError, match='nothing to run in int8'):
        quantize_int8(fused_model, {})


def test_seven_bit_inputs_are_clamped_to_the_top_level():
    # Beyond the calibrated range a 7-bit input must stay at level 127:
    # level 255 would bring back the saturation 7 bits avoid.
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    int8 = Int8Conv2d(conv, (0.0, 1.0), activation_bits=7)
    assert int8._input_max == pytest.approx(1.0)
    top, beyond = torch.full((1, 8, 4, 4), 1.0), torch.full((1, 8, 4, 4), 5.)
    with torch.inference_mode():
        assert torch.equal(int8(beyond), int8(top))


def test_int8_ops_refused_when_their_check_crashes(monkeypatch, log_lines):
    # A child whose check crashes: the ops are never called here.
    monkeypatch.setattr(
        guard, '_child_command',
        lambda module, fn: [sys.executable, '-c', 'import os; os.abort()'])
    monkeypatch.setattr(guard, 'child_problem',
                        guard.child_problem.__wrapped__)
    monkeypatch.setattr(guard, '_logged', set())
    calls = []
    monkeypatch.setattr(onednn_int8, 'prepack', lambda *a: calls.append(a))
    monkeypatch.setattr(onednn_int8, 'check_qconv', lambda: calls.append(1))
    guard.int8_problem.cache_clear()
    try:
        assert why_int8_unavailable() is not None
        with pytest.raises(ConfigError, match='crashed a child process'):
            Int8Conv2d(nn.Conv2d(8, 8, 3, padding=1), (0.0, 1.0))
    finally:
        guard.int8_problem.cache_clear()
    assert calls == []
    lines = [m for m in log_lines if 'not usable' in m]
    assert len(lines) == 1 and 'int8 conv ops' in lines[0]


def _capped_env():
    return dict(
        os.environ,
        ONEDNN_MAX_CPU_ISA='AVX2',
        OMP_NUM_THREADS='1',
        PYTHONWARNINGS='ignore')


def test_eight_bit_inputs_saturate_without_vnni():
    """The reason for 7 bits, shown on oneDNN's AVX2 path: if this stops
    failing with 8 bits, oneDNN no longer saturates and 7 bits can go."""
    code = ('import torch; from torch import nn\n'
            'from mmseg_repvgg.deploy.kernels.int8 import Int8Conv2d\n'
            'from mmseg_repvgg.deploy.machine import machine\n'
            'assert not machine().vnni\n'
            'torch.manual_seed(0)\n'
            'conv = nn.Conv2d(16, 24, 3, padding=1).eval()\n'
            'x = torch.randn(2, 16, 12, 20)\n'
            'r = (float(x.min()), float(x.max()))\n'
            'e = conv(x).detach()\n'
            'for bits in (8, 7):\n'
            '    y = Int8Conv2d(conv, r, activation_bits=bits)(x)\n'
            '    print(bits, float((e - y).abs().max() / e.abs().max()))\n')
    out = subprocess.run([sys.executable, '-c', code],
                         env=_capped_env(),
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    errors = dict(line.split() for line in out.stdout.split('\n') if line)
    assert float(errors['8']) > 0.1  # saturated
    assert float(errors['7']) < 0.03


def test_non_vnni_path_in_a_subprocess():
    """This file's tests again, with oneDNN capped to AVX2 (no VNNI)."""
    here = Path(__file__)
    out = subprocess.run([
        sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-k',
        'not subprocess and not saturate',
        str(here)
    ],
                         cwd=here.parents[2],
                         env=_capped_env(),
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert ' passed' in out.stdout and 'failed' not in out.stdout
