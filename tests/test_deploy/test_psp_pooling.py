"""The channels_last-safe pyramid pooling equals mmseg's PPM pooling."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.psp_head import PPM
from torch import nn

from mmseg_repvgg.deploy.forms import parse_form
from mmseg_repvgg.deploy.kernels.psp_lowres import lowres_psp_heads
from mmseg_repvgg.deploy.kernels.psp_pooling import (
    ContiguousAdaptiveAvgPool2d, contiguous_psp_pooling)
from mmseg_repvgg.deploy.steps import fuse_model
from mmseg_repvgg.deploy.steps import structure as form_structure
from mmseg_repvgg.models import segmentor_logits

CL = torch.channels_last


def _ppm(bins=(1, 2, 3, 6), channels=5):
    torch.manual_seed(0)
    ppm = PPM(bins, channels, 4, None, dict(type='BN'), dict(type='ReLU'),
              False).eval()
    for module in ppm.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return ppm


@pytest.mark.parametrize('bins', [1, 2, 3, 6])
@pytest.mark.parametrize('size', [(7, 13), (5, 9), (11, 3), (12, 18), (6, 6)])
def test_pool_equals_adaptive_pool(bins, size):
    """Every bin size, odd (overlapping windows) and divisible sizes."""
    x = torch.randn(2, 6, *size)
    reference = nn.AdaptiveAvgPool2d(bins)
    safe = ContiguousAdaptiveAvgPool2d(bins)
    expected = reference(x)
    # Contiguous input: bit for bit.
    assert torch.equal(safe(x), expected)
    # channels_last input: bit for bit with the contiguous pooling, and
    # within fp32 rounding of mmseg's pooling of that very tensor.
    x_cl = x.contiguous(memory_format=CL)
    assert torch.equal(safe(x_cl), expected)
    torch.testing.assert_close(
        safe(x_cl), reference(x_cl), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize('bins', [1, 2, 3, 6])
@pytest.mark.parametrize('size', [(128, 256), (64, 128), (7, 13)])
def test_pool_equals_contiguous_pool_on_cuda_fp16(bins, size):
    """What a channels_last fp16 form pools on a GPU (a contiguous copy:
    CUDA's channels_last adaptive pooling is many times slower) equals
    the contiguous pooling bit for bit."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, *size, generator=gen).to('cuda', torch.float16)
    actual = ContiguousAdaptiveAvgPool2d(bins)(x.contiguous(memory_format=CL))
    assert actual.dtype == torch.float16
    assert torch.equal(actual, F.adaptive_avg_pool2d(x, bins))


@pytest.mark.parametrize('size', [(7, 13), (9, 5), (16, 32)])
def test_ppm_outputs_equal_after_the_switch(size):
    ppm = _ppm()
    safe = copy.deepcopy(ppm)
    assert contiguous_psp_pooling(safe) == ['0.0', '1.0', '2.0', '3.0']
    assert contiguous_psp_pooling(safe) == []  # already switched
    x = torch.randn(1, 5, *size)
    with torch.no_grad():
        for expected, actual in zip(ppm(x), safe(x)):
            assert torch.equal(expected, actual)
        ppm_cl = copy.deepcopy(ppm).to(memory_format=CL)
        safe_cl = copy.deepcopy(safe).to(memory_format=CL)
        x_cl = x.contiguous(memory_format=CL)
        for expected, actual in zip(ppm_cl(x_cl), safe_cl(x_cl)):
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_channels_last_forms_pool_contiguously(tiny_model):
    """The structure step switches the pools of channels_last forms, also
    inside the low-res head, and the logits do not change."""
    switched = form_structure(parse_form('reduced_cl_lowres'), tiny_model)
    pools = [
        m for m in switched.decode_head.psp_modules.modules()
        if isinstance(m, nn.AdaptiveAvgPool2d)
    ]
    assert pools and all(type(p) is ContiguousAdaptiveAvgPool2d for p in pools)
    # Forms that stay contiguous keep mmseg's pooling untouched.
    plain = form_structure(parse_form('lowres'), tiny_model)
    assert not any(
        isinstance(m, ContiguousAdaptiveAvgPool2d) for m in plain.modules())
    reference = fuse_model(tiny_model, 'full')
    lowres = copy.deepcopy(reference)
    lowres_psp_heads(lowres)
    x = torch.randn(1, 3, 40, 72)
    with torch.no_grad():
        expected = segmentor_logits(lowres, x)
        actual = segmentor_logits(switched, x)
    assert torch.equal(expected, actual)
