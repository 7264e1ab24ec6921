"""One availability answer: every form ``--list-forms`` calls runnable here
builds through the pipeline, and every form it refuses is refused by the
pipeline with the same reason."""
import pytest
import torch

from mmseg_repvgg.deploy.api import deploy_model
from mmseg_repvgg.deploy.availability import available_forms
from mmseg_repvgg.deploy.forms import FORMS, FormUnavailable


def _runnable():
    return [name for name, why in available_forms().items() if why is None]


def test_listing_covers_every_form():
    assert set(available_forms()) == set(FORMS)
    assert 'fused' in _runnable()


@pytest.mark.parametrize('name', sorted(FORMS))
def test_listed_runnable_means_it_builds(tiny_model, name):
    why = available_forms()[name]
    calibration = [torch.randn(1, 3, 32, 64)]
    if why is not None:
        with pytest.raises(FormUnavailable) as err:
            deploy_model(tiny_model, name, calibration)
        assert why in str(err.value)
        return
    # Construction only: compiled forms compile, and runtime forms export,
    # at their first call, which test_deploy_forms.py covers.
    deployed = deploy_model(tiny_model, name, calibration)
    assert deployed.form.name == name
