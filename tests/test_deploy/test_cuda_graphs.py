"""The CUDA graph forms: refused on the CPU with the reason; on a GPU
replayed, equal to the eager form, and captured again when the input shape
changes."""
import pytest
import torch

from mmseg_repvgg.deploy.api import deploy_model
from mmseg_repvgg.deploy.forms import (NAMED_FORMS, FormUnavailable,
                                       available_forms, parse_form,
                                       why_unavailable)

GRAPH_FORMS = [name for name in NAMED_FORMS if parse_form(name).cuda_graph]


def test_graph_forms_are_refused_on_the_cpu(tiny_model):
    assert GRAPH_FORMS == ['reduced_graph', 'reduced_cl_lowres_graph']
    reasons = available_forms('cpu')
    for name in GRAPH_FORMS:
        assert 'graph needs CUDA' in reasons[name]
        assert parse_form(name).label('cuda').endswith('CUDA graph')
        with pytest.raises(
                FormUnavailable,
                match=f'{name} cannot run on cpu here: CUDA graph'):
            deploy_model(tiny_model, name)
    # The same forms without the graph run on the CPU where bf16 does.
    assert why_unavailable(parse_form('reduced_cl_lowres'),
                           'cpu') == reasons['reduced']


@pytest.mark.cuda
@pytest.mark.parametrize('name', GRAPH_FORMS)
def test_graph_replays_and_captures_again_for_a_new_shape(tiny_model, name):
    eager = deploy_model(tiny_model, name[:-len('_graph')], device='cuda')
    graphed = deploy_model(tiny_model, name, device='cuda')
    gen = torch.Generator().manual_seed(0)
    first, second = (
        torch.randn(1, 3, 32, 64, generator=gen) for _ in range(2))
    for x in (first, second, first):  # replays see each new input
        expected, actual = eager(x), graphed(x)
        torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-3)
    assert graphed._run.captures == 1
    out = graphed(torch.randn(1, 3, 48, 80, generator=gen))
    assert out.shape[-2:] == (48, 80)
    assert graphed._run.captures == 2
    assert any('captured again' in note for note in graphed.notes)
    # A result is the caller's: the next replay does not overwrite it.
    kept = graphed(first)
    graphed(second)
    torch.testing.assert_close(kept, eager(first), rtol=1e-3, atol=1e-3)
