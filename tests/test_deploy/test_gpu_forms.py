"""The GPU deploy forms on CUDA against fused fp32 (the CPU forms:
test_deploy_forms.py; the CUDA graph forms' replays: test_cuda_graphs.py).
"""
import pytest
import torch

from mmseg_repvgg.compare import agreeing_labels, relative_error
from mmseg_repvgg.deploy import deploy_model
from mmseg_repvgg.models import segmentor_logits

pytestmark = pytest.mark.cuda

GPU_FORMS = ('reduced', 'reduced_cl', 'reduced_lowres', 'reduced_cl_lowres',
             'reduced_graph', 'reduced_cl_lowres_graph', 'autocast')
#: Largest relative logit difference from fused fp32: fp32 as on the CPU,
#: fp16 as test_deploy_forms.py's bound for it.
FP32_BOUND, FP16_BOUND = 1e-4, 0.01
#: fp16 may flip a pixel's label only where its two best classes nearly
#: tie; a wrong layout or cast would flip most.
MIN_AGREEMENT = 0.95


@pytest.fixture
def inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 32, 64, generator=gen)


def test_fused_fp32_on_cuda_equals_unfused_on_the_cpu(tiny_model, inputs,
                                                      true_fp32):
    with torch.no_grad():
        expected = segmentor_logits(tiny_model, inputs)
        actual = deploy_model(tiny_model, 'fused', device='cuda')(inputs)
    assert actual.is_cuda and actual.dtype == torch.float32
    assert relative_error(expected, actual.cpu())[1] < FP32_BOUND


@pytest.mark.parametrize('name', GPU_FORMS)
def test_gpu_form_against_fused_fp32(tiny_model, inputs, true_fp32, name):
    reference = deploy_model(tiny_model, 'fused', device='cuda')
    deployed = deploy_model(tiny_model, name, device='cuda')
    with torch.no_grad():
        expected = reference(inputs)
        actual = deployed(inputs)
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    error = relative_error(expected, actual)[1]
    assert 0 < error < FP16_BOUND, (name, error)  # fp16 really ran
    same, pixels = agreeing_labels(expected, actual)
    assert same / pixels >= MIN_AGREEMENT, (name, same / pixels)
    # The source model is never changed by making a form.
    assert not tiny_model.backbone.stem.deploy
