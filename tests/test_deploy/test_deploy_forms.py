"""deploy_model: every form against fused fp32, availability, auto, and the
test loop scoring forms (``tools/test.py --deploy-form``)."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.runner import Runner

from mmseg_repvgg.compare import relative_error
from mmseg_repvgg.deploy import auto as auto_module
from mmseg_repvgg.deploy import forms
from mmseg_repvgg.deploy.api import deploy_model
from mmseg_repvgg.deploy.deployed import DeployedModel, deployed_segmentor
from mmseg_repvgg.deploy.forms import (NAMED_FORMS, FormUnavailable,
                                       available_forms, parse_form,
                                       why_unavailable)
from mmseg_repvgg.deploy.machine import Machine, machine
from mmseg_repvgg.errors import ConfigError
from mmseg_repvgg.models import segmentor_logits

#: Largest relative logit difference from fused fp32, by precision (and
#: runtime where its kernels round differently).
BOUNDS = dict(fp32=1e-4, bf16=0.05, fp16=0.01, int8=0.3)
#: The named forms and the benchmark's steps towards them; torch.compile
#: takes tens of seconds even for a tiny model: not here.
TESTED = [
    name for name in NAMED_FORMS + ('unfused', 'backbone_fused', 'fused_cl')
    if parse_form(name).runtime != 'compile'
]


def simulated(flags):
    return Machine(
        cpu='simulated',
        arch='x86_64',
        cpu_flags=frozenset(flags),
        onednn_int8=machine().onednn_int8)


def simulate(monkeypatch, flags):
    """The deploy forms see a CPU with ``flags`` (and this torch)."""
    fake = simulated(flags)
    monkeypatch.setattr(forms, 'machine', lambda: fake)


@pytest.mark.parametrize('name', TESTED)
def test_every_form_against_fused_fp32(tiny_model, name, tmp_path):
    form = parse_form(name)
    reason = why_unavailable(form)
    if reason:
        pytest.skip(reason)
    calibration = [torch.randn(2, 3, 32, 64)]
    deployed = deploy_model(
        tiny_model, form, calibration, workdir=str(tmp_path))
    assert isinstance(deployed, DeployedModel) and deployed.form == form
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        expected = segmentor_logits(tiny_model, x)
        actual = deployed(x)
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    error = relative_error(expected, actual)[1]
    assert error < BOUNDS[form.dtype_name()], (name, error)
    if form.precision == 'int8':
        assert error > 0  # really quantized
        # Runtimes too: equalized before they quantize the export.
        assert any('range equalization' in n for n in deployed.notes)
        agree = (expected.argmax(1) == actual.argmax(1)).float().mean()
        assert agree > 0.9
    # The source model is never changed by making a form.
    assert tiny_model.with_auxiliary_head
    assert not tiny_model.backbone.stem.deploy


def test_forms_the_machine_cannot_run_natively_are_refused(
        tiny_model, monkeypatch):
    simulate(monkeypatch, {'avx2'})
    reasons = available_forms()
    assert reasons['fused'] is None and reasons['int8'] is None
    assert 'AVX512-BF16' in reasons['reduced']
    assert reasons['reduced_lowres'] == reasons['reduced']
    with pytest.raises(FormUnavailable) as err:
        deploy_model(tiny_model, 'reduced')
    # Why, and what runs instead.
    assert 'reduced cannot run on cpu here: bf16 is not native' in str(
        err.value)
    assert 'fused runs here' in str(err.value)
    assert '--allow-emulated' in str(err.value)
    # An explicit option still runs it (emulated), and the logits are close.
    deployed = deploy_model(tiny_model, 'reduced', allow_emulated=True)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert relative_error(segmentor_logits(tiny_model, x),
                              deployed(x))[1] < BOUNDS['bf16']
    assert available_forms(allow_emulated=True)['reduced'] is None
    simulate(monkeypatch, {'avx2', 'avx512f', 'avx512_bf16'})
    assert available_forms()['reduced'] is None


def test_unknown_form_and_missing_calibration_are_one_line_errors(tiny_model):
    with pytest.raises(ConfigError, match="'int4' is not a part of a form"):
        deploy_model(tiny_model, 'int4')
    if why_unavailable(parse_form('int8')) is None:
        with pytest.raises(ConfigError, match='calibration'):
            deploy_model(tiny_model, 'int8')


def test_composed_specs_are_the_named_forms(tiny_model):
    """A spec's parts in any order make the same form as its name."""
    deployed = deploy_model(tiny_model, 'lowres+winograd')
    assert deployed.form == parse_form('winograd_lowres')
    assert deployed.form.name == 'winograd_lowres'
    # The steps towards a deploy form are forms too, not listed ones.
    assert deploy_model(tiny_model, 'unfused').form.fuse == 'none'
    assert 'unfused' not in available_forms()


@pytest.fixture
def auto_cache(tmp_path, monkeypatch):
    """auto's ranking cache in a temporary folder, never the home dir."""
    monkeypatch.setenv('MMSEG_REPVGG_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache' / auto_module.CACHE_NAME


def fake_timing(monkeypatch, table):
    """auto's clock replaced by ``table`` (form name -> seconds)."""
    calls = []

    def seconds(deployed, inputs):
        calls.append(deployed.form.name)
        return table.get(deployed.form.name, 1.0)

    monkeypatch.setattr(auto_module, 'seconds_per_call', seconds)
    return calls


def test_auto_takes_the_fastest_form_measured_here(tiny_model, monkeypatch,
                                                   auto_cache):
    calls = fake_timing(monkeypatch, {'lowres': 0.1, 'winograd': 0.05})
    simulate(monkeypatch, {'avx2'})
    deployed = deploy_model(tiny_model, 'auto', input_shape=(1, 3, 32, 64))
    assert deployed.form.name == 'winograd'
    # Every candidate that runs here was measured; bf16 is not native.
    assert {'fused', 'lowres', 'winograd', 'winograd_lowres'} <= set(calls)
    assert 'reduced' not in calls
    assert any('refused reduced: bf16 is not native' in n
               for n in deployed.notes)
    assert any(
        n.startswith('auto measured winograd 50.0 ms') for n in deployed.notes)
    # Another table, another choice: the order is not fixed in code.
    fake_timing(monkeypatch, {'lowres': 0.01})
    assert deploy_model(
        tiny_model,
        'auto',
        input_shape=(1, 3, 32, 64),
    ).form.name == 'winograd'  # the cached ranking of this machine
    auto_cache.unlink()
    assert deploy_model(
        tiny_model, 'auto', input_shape=(1, 3, 32, 64)).form.name == 'lowres'


def test_auto_reuses_the_ranking_without_measuring(tiny_model, monkeypatch,
                                                   auto_cache):
    fake_timing(monkeypatch, {'lowres': 0.01})
    first = deploy_model(tiny_model, 'auto', input_shape=(1, 3, 32, 64))
    assert auto_cache.is_file() and first.form.name == 'lowres'
    calls = fake_timing(monkeypatch, {})
    second = deploy_model(tiny_model, 'auto', input_shape=(1, 3, 32, 64))
    assert second.form.name == 'lowres' and calls == []
    # Another input shape is another measurement.
    deploy_model(tiny_model, 'auto', input_shape=(1, 3, 64, 64))
    assert calls
    # An unreadable cache is ignored (measured again), never an error.
    auto_cache.write_text('{not json')
    calls.clear()
    assert deploy_model(
        tiny_model, 'auto', input_shape=(1, 3, 32, 64)).form.name
    assert calls


def test_auto_refuses_a_form_that_changes_labels(tiny_model, monkeypatch,
                                                 auto_cache):
    if why_unavailable(parse_form('int8')) is not None:
        pytest.skip('int8 needs oneDNN on x86')
    fake_timing(monkeypatch, {'int8_lowres': 0.01, 'int8': 0.02})
    calibration = [torch.randn(1, 3, 32, 64) for _ in range(4)]
    real = auto_module.label_agreement
    monkeypatch.setattr(
        auto_module, 'label_agreement', lambda ref, cand, batches: 0.5
        if cand.form.precision == 'int8' else real(ref, cand, batches))
    deployed = deploy_model(tiny_model, 'auto', calibration)
    assert deployed.form.precision == 'fp32'
    assert any('refused int8_lowres: labels 50.00%' in n
               for n in deployed.notes)
    monkeypatch.setattr(auto_module, 'label_agreement',
                        lambda ref, cand, batches: 1.0)
    # The cached ranking is reused, and the label check runs again.
    assert deploy_model(tiny_model, 'auto',
                        calibration).form.name == 'int8_lowres'


def test_deployed_segmentor_runs_mmseg_inference(tiny_model):
    deployed = deploy_model(tiny_model, 'lowres')
    segmentor = deployed_segmentor(tiny_model, deployed)
    x = torch.randn(1, 3, 32, 64)
    metas = [dict(img_shape=(32, 64), ori_shape=(32, 64))]
    with torch.no_grad():
        expected = tiny_model.inference(x, metas)
        actual = segmentor.inference(x, metas)
    assert relative_error(expected, actual)[1] < 1e-4
    assert segmentor.deploy_form == 'lowres'
    # The source segmentor's own method is untouched.
    assert 'encode_decode' not in vars(tiny_model)
    assert 'encode_decode' in vars(segmentor)


def _test(cfg, checkpoint, name, forms=None, **loop):
    cfg = copy.deepcopy(cfg)
    cfg.experiment_name = name
    cfg.work_dir = str(Path(cfg.work_dir) / name)
    cfg.load_from = str(checkpoint)
    if forms:
        cfg.test_cfg = dict(type='DeployFormTestLoop', forms=forms, **loop)
    runner = Runner.from_cfg(cfg)
    return runner.test(), runner


def test_test_loop_scores_deploy_forms_in_one_pass(tiny_seg_cfg,
                                                   tiny_seg_checkpoint):
    plain, _ = _test(tiny_seg_cfg, tiny_seg_checkpoint, 'plain')
    fused, runner = _test(tiny_seg_cfg, tiny_seg_checkpoint, 'fused',
                          ['fused'])
    assert fused['mIoU'] == pytest.approx(plain['mIoU'], abs=1e-6)
    [result] = runner.test_loop.results
    assert result['form'] == 'fused' and result['label_agreement'] == 1.0
    several = ['fused', 'lowres', 'unfused']
    int8 = why_unavailable(parse_form('int8_lowres')) is None
    several += ['int8_lowres'] if int8 else []
    first, runner = _test(
        tiny_seg_cfg,
        tiny_seg_checkpoint,
        'several',
        several,
        calibration_images=2)
    results = runner.test_loop.results
    assert [r['form'] for r in results] == several
    assert first == results[0]['metrics']
    for result in results[1:3]:  # fp32: the same labels, the same score
        assert result['label_agreement'] == pytest.approx(1.0, abs=1e-3)
        assert result['metrics']['mIoU'] == pytest.approx(
            plain['mIoU'], abs=0.05)
    if int8:
        assert 0.5 < results[3]['label_agreement'] <= 1.0
        assert any('int8 activations' in n for n in results[3]['notes'])


def test_test_loop_refuses_a_wrong_spec_before_reading_data(
        tiny_seg_cfg, tiny_seg_checkpoint):
    with pytest.raises(ConfigError, match="'int4' is not a part"):
        _test(tiny_seg_cfg, tiny_seg_checkpoint, 'bad', ['fused', 'int4'])


def test_test_tool_deploy_form_arguments(run_tool, tiny_seg_cfg,
                                         tiny_seg_checkpoint, capsys):
    code, err = run_tool('test', tiny_seg_cfg.filename, tiny_seg_checkpoint,
                         '--deploy-form', 'int4')
    assert code == 2 and "'int4' is not a part of a form" in err
    code, err = run_tool('test', tiny_seg_cfg.filename, tiny_seg_checkpoint,
                         '--deploy-form', 'int8', '--calibration-images', '0')
    assert code == 2 and '--calibration-images' in err
    code, _ = run_tool('test', '--list-forms')
    assert code == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason='graph runs on CUDA')
def test_test_tool_refuses_a_form_this_machine_cannot_run_before_any_work(
        run_tool, tiny_seg_cfg, tiny_seg_checkpoint, tmp_path):
    work_dir = tmp_path / 'never'
    code, err = run_tool('test', tiny_seg_cfg.filename, tiny_seg_checkpoint,
                         '--deploy-form', 'reduced_graph', '--work-dir',
                         work_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith('error: reduced_graph cannot run on cpu here')
    instead = 'reduced' if why_unavailable(
        parse_form('reduced')) is None else 'fused'
    assert f'; {instead} runs here' in err
    assert not work_dir.exists()
