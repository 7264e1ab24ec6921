"""The PSP bottleneck computed at pool resolution equals mmseg's PSPHead."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmseg_repvgg.deploy.kernels.psp_lowres import (LowResPSPHead,
                                                    interpolation_matrix,
                                                    lowres_psp_heads)
from mmseg_repvgg.deploy.steps import fuse_model
from mmseg_repvgg.models import segmentor_logits


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('src,dst', [(1, 5), (3, 7), (6, 4), (2, 9)])
def test_interpolation_matrix_is_torch_resize(src, dst, align_corners):
    x = torch.randn(2, 3, src, src)
    matrix_h = interpolation_matrix(src, dst, align_corners, x)
    matrix_w = interpolation_matrix(src, dst + 1, align_corners, x)
    expected = F.interpolate(
        x, (dst, dst + 1), mode='bilinear', align_corners=align_corners)
    actual = matrix_h @ x @ matrix_w.t()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fuse', ['none', 'full'])
@pytest.mark.parametrize('shape', [(1, 3, 32, 64), (2, 3, 40, 72),
                                   (1, 3, 56, 24)])
def test_lowres_head_equals_psphead(tiny_model, fuse, shape):
    # 40x72 and 56x24 give 5x9 and 7x3 features: pool bins that overlap.
    reference = fuse_model(tiny_model, fuse)
    lowres = copy.deepcopy(reference)
    assert lowres_psp_heads(lowres) == ['decode_head']
    assert isinstance(lowres.decode_head, LowResPSPHead)
    x = torch.randn(shape)
    with torch.no_grad():
        expected = segmentor_logits(reference, x)
        actual = segmentor_logits(lowres, x)
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= 1e-5 * scale
    assert lowres_psp_heads(lowres) == []  # already switched


def test_lowres_head_in_bf16_channels_last(tiny_model):
    reference = fuse_model(tiny_model, 'full')
    lowres = copy.deepcopy(reference)
    lowres_psp_heads(lowres)
    lowres = lowres.to(torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        expected = segmentor_logits(reference, x)
        actual = segmentor_logits(
            lowres,
            x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    assert actual.dtype == torch.bfloat16
    assert (actual.float() -
            expected).abs().max() <= 0.05 * expected.abs().max()
