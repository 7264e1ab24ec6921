"""Forms composed from parts: the one parser of specs, and the one answer
to whether this machine runs a form."""
import pathlib

import pytest
import torch

from mmseg_repvgg.deploy.api import deploy_model
from mmseg_repvgg.deploy.forms import (NAMED_FORMS, Form, FormUnavailable,
                                       available_forms, check_form, parse_form)
from mmseg_repvgg.errors import ConfigError

#: Every name in use before forms were composed, and its parts then.
TODAY = {
    'fused':
    dict(),
    'reduced':
    dict(precision='reduced'),
    'reduced_cl':
    dict(precision='reduced', channels_last=True),
    'lowres':
    dict(lowres_psp=True),
    'reduced_lowres':
    dict(precision='reduced', lowres_psp=True),
    'reduced_cl_lowres':
    dict(precision='reduced', channels_last=True, lowres_psp=True),
    'reduced_graph':
    dict(precision='reduced', cuda_graph=True),
    'reduced_cl_lowres_graph':
    dict(
        precision='reduced',
        channels_last=True,
        lowres_psp=True,
        cuda_graph=True),
    'autocast':
    dict(precision='autocast'),
    'winograd':
    dict(winograd=True),
    'winograd_lowres':
    dict(winograd=True, lowres_psp=True),
    'compiled':
    dict(precision='reduced', runtime='compile'),
    'int8':
    dict(precision='int8'),
    'int8_lowres':
    dict(precision='int8', lowres_psp=True),
    'onnxruntime':
    dict(runtime='onnxruntime'),
    'onnxruntime_int8':
    dict(runtime='onnxruntime', precision='int8'),
    'onnxruntime_int8_lowres':
    dict(runtime='onnxruntime', precision='int8', lowres_psp=True),
    'openvino':
    dict(runtime='openvino'),
    'openvino_int8':
    dict(runtime='openvino', precision='int8'),
    # The benchmark's steps towards a deploy form.
    'unfused':
    dict(fuse='none'),
    'backbone_fused':
    dict(fuse='backbone'),
    'fused_cl':
    dict(channels_last=True),
    'compiled_fp32':
    dict(runtime='compile'),
    # The int8 of the first releases, for comparison.
    'int8_plain':
    dict(precision='int8', int8_recipe='plain'),
    'int8_plain_lowres':
    dict(precision='int8', int8_recipe='plain', lowres_psp=True),
}


@pytest.mark.parametrize('name', sorted(TODAY))
def test_every_name_keeps_its_meaning(name):
    form = parse_form(name)
    assert form == Form(**TODAY[name])
    assert form.name == name  # the canonical spelling is the name


def test_the_named_forms_are_todays_shippable_forms():
    assert set(NAMED_FORMS) == {
        name
        for name, parts in TODAY.items()
        if parts.get('fuse', 'full') == 'full' and 'int8_recipe' not in parts
        and name not in ('fused_cl', 'compiled_fp32')
    }
    assert set(available_forms()) == set(NAMED_FORMS)


@pytest.mark.parametrize('spec', [
    'lowres+int8', 'int8+lowres', 'LOWRES_int8', ' int8_lowres ',
    'fused+int8+lowres'
])
def test_parts_in_any_order_and_spelling(spec):
    assert parse_form(spec) == parse_form('int8_lowres')
    assert parse_form(spec).name == 'int8_lowres'


def test_new_combinations_of_parts():
    form = parse_form('int8+cl+lowres')
    assert (form.precision, form.channels_last,
            form.lowres_psp) == ('int8', True, True)
    assert form.name == 'int8_cl_lowres'
    assert parse_form(form.name) == form


@pytest.mark.parametrize('spec, message', [
    ('int4', "'int4' is not a part of a form; the parts are fused"),
    ('int8_reduced', 'gives precision two values (int8, reduced)'),
    ('unfused_fused', 'gives fuse two values'),
    ('onnxruntime_reduced', 'onnxruntime runs fp32 or int8'),
    ('openvino_cl', 'cl, winograd and graph are PyTorch parts'),
    ('winograd_reduced', 'the Winograd kernels are fp32'),
    ('unfused_int8', 'int8 quantizes the fused convs'),
    ('compiled_int8', 'torch.compile runs fp32 or reduced'),
    ('onnxruntime_openvino', 'gives runtime two values'),
    ('reduced_plain', 'plain is an int8 recipe (add int8)'),
])
def test_specs_that_name_no_form_are_refused_in_one_sentence(spec, message):
    with pytest.raises(ConfigError) as err:
        parse_form(spec)
    assert message in str(err.value)
    assert '\n' not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason='graph runs on CUDA')
def test_a_form_this_machine_cannot_run_names_one_that_does():
    with pytest.raises(FormUnavailable) as err:
        check_form('lowres+graph')
    assert str(err.value).startswith(
        'lowres_graph cannot run on cpu here: CUDA graphs')
    assert '; lowres runs here' in str(err.value)


@pytest.mark.parametrize('name', NAMED_FORMS)
def test_listed_runnable_means_it_builds(tiny_model, name):
    """--list-forms, the pipeline and auto give one answer."""
    why = available_forms()[name]
    calibration = [torch.randn(1, 3, 32, 64)]
    if why is not None:
        with pytest.raises(FormUnavailable) as err:
            deploy_model(tiny_model, name, calibration)
        assert why in str(err.value)
        return
    # Construction only: compiled forms compile, and runtime forms export,
    # at their first call, which test_deploy_forms.py covers.
    assert deploy_model(tiny_model, name, calibration).form.name == name


def test_one_source_file_refuses_unknown_form_names():
    package = pathlib.Path(__file__).resolve().parents[2] / 'mmseg_repvgg'
    refusing = sorted(
        str(path.relative_to(package)) for path in package.rglob('*.py')
        if 'is not a part of a form' in path.read_text()
        or 'unknown deploy form' in path.read_text()
        or 'unknown form' in path.read_text())
    assert refusing == ['deploy/forms.py']
