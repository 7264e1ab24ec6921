"""tools/benchmark.py: the structure of what it writes, never its times.

One in-process run of the tool's ``main`` on a 32x64 input measures the
tiny PSPNet-RepVGG in every form and a tiny PSPNet-ResNet baseline, with
an mIoU check on the tiny dataset; the tests read its JSON, Markdown and
PNG. The helpers are checked on synthetic numbers.
"""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mmseg_repvgg.benchmark.analysis import (default_pairs, fast_path,
                                             fusion_summary, miou_rejected)
from mmseg_repvgg.benchmark.measure import PeakMemory
from mmseg_repvgg.benchmark.run import load_model
from mmseg_repvgg.benchmark.settings import (ModelSpec, Settings,
                                             split_model_arg)
from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.deploy.forms import NAMED_FORMS, parse_form, why_unavailable
from mmseg_repvgg.deploy.kernels.int8 import why_int8_unavailable
from mmseg_repvgg.deploy.machine import machine
from mmseg_repvgg.errors import ConfigError

#: The int8 forms need oneDNN's x86 int8 kernels; elsewhere they are skipped.
INT8 = why_int8_unavailable() is None
#: bf16 runs only where the CPU has it natively (AVX512-BF16, AMX); on other
#: CPUs its forms and its ceiling are skipped, with the reason.
BF16 = machine().native('bf16')

REPO = Path(__file__).resolve().parents[2]
BASELINE_FORMS = ('unfused', 'fused', 'reduced', 'int8')
#: The steps towards a deploy form, then the named forms; torch.compile
#: takes tens of seconds even for a tiny model: not here.
CANDIDATE_FORMS = tuple(
    f for f in ('unfused', 'backbone_fused', 'fused_cl') + NAMED_FORMS
    if parse_form(f).runtime != 'compile')
# A PSPNet on a narrow ResNet-18: the baseline's code path at toy cost.
TINY_RESNET = """
_base_ = ['mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py']
model = dict(
    pretrained=None,
    backbone=dict(stem_channels=8, base_channels=8),
    decode_head=dict(in_channels=64, channels=8, num_classes=3),
    auxiliary_head=dict(in_channels=32, channels=8, num_classes=3))
"""


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'tool_benchmark', REPO / 'tools' / 'benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tool_run(tiny_seg_cfg, tiny_seg_checkpoint, tmp_path, capsys):
    """Run the tool once: every form of the tiny RepVGG model, the tiny
    ResNet baseline, and the mIoU check."""
    baseline = tmp_path / 'tiny_resnet.py'
    baseline.write_text(TINY_RESNET)
    out_dir = tmp_path / 'bench'
    argv = [
        tiny_seg_cfg.filename, '--baselines',
        f'{baseline}@{",".join(BASELINE_FORMS)}', '--shape', '32', '64',
        '--warmup', '1', '--runs', '1', '--device', 'cpu', '--forms',
        *CANDIDATE_FORMS, '--matmul-size', '64', '--conv-shape', '8', '8', '8',
        '--miou-check', tiny_seg_cfg.filename,
        str(tiny_seg_checkpoint), '--out-dir',
        str(out_dir)
    ]
    threads = torch.get_num_threads()
    try:
        assert run_cli(load_tool().main, argv + ['--threads', '1']) == 0
    finally:
        torch.set_num_threads(threads)
    stdout = capsys.readouterr().out
    return out_dir, stdout, Path(tiny_seg_cfg.filename).stem


def test_tool_writes_json_markdown_and_png(tool_run):
    out_dir, stdout, name = tool_run
    results = json.loads((out_dir / 'benchmark.json').read_text())
    assert {
        'settings', 'machine', 'ceilings', 'models', 'comparisons',
        'miou_check', 'fast_path_rejected'
    } <= set(results)
    assert 'checks' not in results  # targets live in the docs
    assert results['machine']['versions']['torch'] == torch.__version__
    features = results['machine']['features']
    assert features['isa_level'] == machine().isa_level
    assert (features['int8_activation_bits'] == machine().int8_activation_bits)
    assert results['ceilings']['fp32']['matmul'] > 0
    if BF16:
        assert results['ceilings']['bf16']['conv3x3'] > 0
    else:  # never emulated: skipped with the reason
        assert 'bf16' not in results['ceilings']
        assert 'AVX512-BF16' in results['ceilings']['skipped']['bf16']

    candidate, baseline = results['models']
    assert (candidate['name'], candidate['role']) == (name, 'candidate')
    assert (baseline['name'], baseline['role']) == ('tiny_resnet', 'baseline')
    assert candidate['weights'] == baseline['weights'] == 'random'
    assert [f['form'] for f in candidate['forms']] == list(CANDIDATE_FORMS)
    assert [f['form'] for f in baseline['forms']] == list(BASELINE_FORMS)
    for form in candidate['forms'] + baseline['forms']:
        reason = why_unavailable(parse_form(form['form']))
        if reason:
            assert form['status'] == 'skipped' and reason in form['note']
            continue
        assert form['status'] == 'ok', form
        assert form['latency_ms']['min'] <= form['latency_ms']['median']
        assert form['images_per_s'] > 0 and form['gflop'] > 0
        assert form['share_of_fp32_matmul'] > 0
        assert form['memory']['weights_mb'] > 0
        assert 0 <= form['accuracy']['label_agreement'] <= 1
    forms = {f['form']: f for f in candidate['forms']}
    # Fusion is exact, reduced precision is not; fusion removes FLOPs.
    assert forms['fused']['accuracy']['max_rel_diff'] < 1e-4
    assert forms['lowres']['accuracy']['max_rel_diff'] < 1e-4
    assert forms['winograd']['accuracy']['max_rel_diff'] < 1e-4
    if BF16:
        assert forms['reduced']['accuracy']['max_rel_diff'] > 1e-4
    assert forms['fused']['gflop'] < forms['unfused']['gflop']
    assert forms['lowres']['gflop'] < forms['fused']['gflop']
    assert forms['fused']['backbone_profile']['conv_ms'] > 0
    if INT8:
        # int8: convs replaced (the oneDNN kernel is profiled as a conv),
        # FLOPs counted on the float structure, logits close, not exact.
        assert forms['int8']['backbone_profile']['conv_ms'] > 0
        assert forms['int8']['gflop'] == forms['fused']['gflop']
        # What runs in which precision, per conv.
        layers = forms['int8']['int8_layers']
        assert {row['precision'] for row in layers} <= {'int8', 'fp32'}
        assert any(row['precision'] == 'int8' for row in layers)
        assert 1e-4 < forms['int8']['accuracy']['max_rel_diff'] < 0.5
        assert results['ceilings']['int8']['conv3x3'] > 0
        # onnxruntime's own int8 (QDQ): quantized, and smaller on disk.
        ort_int8, ort = forms['onnxruntime_int8'], forms['onnxruntime']
        assert ort_int8['accuracy']['max_rel_diff'] > 1e-4
        assert (ort_int8['memory']['weights_mb'] < ort['memory']['weights_mb'])
    assert candidate['fusion']['backbone_share'] > 0
    assert candidate['fast_path']['form'] in forms

    comparison, = results['comparisons']
    assert (comparison['candidate'], comparison['baseline']) == (name,
                                                                 'tiny_resnet')
    assert comparison['fp32_like_for_like'] > 0
    assert not INT8 or comparison['int8_like_for_like'] > 0

    miou = {row['form']: row for row in results['miou_check']['forms']}
    scored = {'fused', 'winograd_lowres'
              } | ({'reduced', 'reduced_lowres'} if BF16 else set())
    assert set(miou) == scored | ({'int8', 'int8_lowres'} if INT8 else set())
    assert miou['fused']['miou_diff'] == 0
    assert abs(miou['winograd_lowres']['miou_diff']) < 0.05
    if not BF16:
        assert 'AVX512-BF16' in results['miou_check']['skipped']['reduced']
    assert results['miou_check']['images'] == 4
    if INT8:
        assert 0 <= miou['int8']['mIoU'] <= 100
        assert results['miou_check']['calibration_images'] > 0

    markdown = (out_dir / 'benchmark.md').read_text()
    assert stdout.strip().startswith(markdown.strip()[:200])
    assert f'Weights: {name} random; tiny_resnet random.' in markdown
    rows = [line for line in markdown.splitlines() if line.startswith('| ')]
    for model, form in [(candidate, f) for f in candidate['forms']
                        ] + [(baseline, f) for f in baseline['forms']]:
        assert any(
            row.startswith(f'| {model["name"]} | {form["label"]} |')
            for row in rows), form['label']
    assert any(row.startswith(f'| {name} vs tiny_resnet |') for row in rows)
    assert not INT8 or 'Per conv of the int8 forms:' in markdown

    png = (out_dir / 'benchmark.png').read_bytes()
    assert png.startswith(b'\x89PNG\r\n\x1a\n') and len(png) > 1000


def test_bad_settings_exit_2_with_one_line(capsys):
    tool = load_tool()
    assert run_cli(tool.main, ['--baselines', '--warmup', '0', 'x.py']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and '--warmup' in err
    assert run_cli(tool.main, ['--baselines']) == 2
    assert 'nothing to measure' in capsys.readouterr().err


def test_pretrained_backbone_is_loaded_with_its_statistics(
        tiny_seg_cfg, tiny_seg_checkpoint):
    """--pretrained-backbone: the backbone's init_cfg weights, BatchNorm
    statistics included, are what is measured; the head alone is
    calibrated; a backbone without one is refused."""
    saved = torch.load(tiny_seg_checkpoint, weights_only=True)['state_dict']
    backbone = {
        k[len('backbone.'):]: v
        for k, v in saved.items() if k.startswith('backbone.')
    }
    init_cfg = dict(
        type='Pretrained',
        checkpoint=str(tiny_seg_checkpoint),
        prefix='backbone.')
    spec = ModelSpec(
        tiny_seg_cfg.filename,
        cfg_options={'model.backbone.init_cfg': init_cfg})
    settings = Settings(device='cpu', pretrained_backbone=True)
    model = load_model(spec, settings)
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, backbone[key], msg=key)
    head_norms = [
        m for m in model.decode_head.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert head_norms and all(
        not torch.equal(m.running_var, torch.ones_like(m.running_var))
        for m in head_norms)
    random = load_model(spec, Settings(device='cpu'))
    assert any(not torch.equal(value, backbone[key])
               for key, value in random.backbone.state_dict().items())
    with pytest.raises(ConfigError, match='init_cfg checkpoint'):
        load_model(ModelSpec(tiny_seg_cfg.filename), settings)


def test_model_argument_syntax():
    spec = split_model_arg('a/b.py=c.pth@fused,reduced')
    assert (spec.config, spec.checkpoint, spec.forms,
            spec.name) == ('a/b.py', 'c.pth', ('fused', 'reduced'), 'b')
    plain = split_model_arg('mmseg::pspnet/x.py')
    assert (plain.checkpoint, plain.forms) == (None, None)
    for bad in ('=c.pth', 'a.py=', 'a.py@'):
        with pytest.raises(ConfigError):
            split_model_arg(bad)


def _model(name, role, unfused, fused, backbone_unfused, backbone_fused):

    def form(key, median, backbone):
        return dict(
            form=key,
            status='ok',
            latency_ms=dict(median=median),
            backbone_ms=dict(median=backbone))

    return dict(
        name=name,
        role=role,
        forms=[
            form('unfused', unfused, backbone_unfused),
            form('fused', fused, backbone_fused)
        ])


def test_fusion_summary_applies_amdahl():
    # Backbone 6 of 10 s, fused to 3 s: Amdahl allows 10 / 4 = 2.5x with a
    # free backbone and predicts 10 / (4 + 3) with the measured one.
    summary = fusion_summary(_model('m', 'candidate', 10.0, 7.5, 6.0, 3.0))
    assert summary['backbone_share'] == pytest.approx(0.6)
    assert summary['amdahl_ceiling'] == pytest.approx(2.5)
    assert summary['backbone_speedup'] == pytest.approx(2.0)
    assert summary['amdahl_predicted'] == pytest.approx(10.0 / 7.0)
    assert summary['fused_speedup'] == pytest.approx(10.0 / 7.5)
    assert summary['share_of_ceiling'] == pytest.approx(10.0 / 7.5 / 2.5)


def test_fast_path_leaves_out_forms_that_fail_the_miou_check():
    model = _model('m', 'candidate', 10.0, 7.5, 6.0, 3.0)
    for name, median in (('reduced', 4.0), ('int8', 2.0)):
        model['forms'].append(
            dict(
                form=name,
                label=name,
                status='ok',
                latency_ms=dict(median=median)))
    assert fast_path(model)['form'] == 'int8'
    miou = dict(forms=[
        dict(form='fused', miou_diff=0.0),
        dict(form='reduced', miou_diff=-0.1),
        dict(form='int8', miou_diff=-0.7),  # more than 0.5 lost
    ])
    # int8 forms not scored go with the failed one.
    assert miou_rejected(miou) == [
        'int8', 'int8_lowres', 'onnxruntime_int8', 'onnxruntime_int8_lowres',
        'openvino_int8'
    ]
    assert fast_path(model, miou_rejected(miou))['form'] == 'reduced'
    assert miou_rejected(None) == []


def test_default_pairs_follow_the_paper():
    models = [
        _model(name, role, 1, 1, 1, 1)
        for name, role in (('pspnet_repvgg_b1g2_fast', 'candidate'),
                           ('pspnet_repvgg_b2_fast',
                            'candidate'), ('pspnet_r101-d8_4xb2', 'baseline'),
                           ('pspnet_r50-d8_4xb2', 'baseline'))
    ]
    assert default_pairs(models) == [
        ('pspnet_repvgg_b1g2_fast', 'pspnet_r50-d8_4xb2'),
        ('pspnet_repvgg_b2_fast', 'pspnet_r101-d8_4xb2')
    ]
    models[0]['name'] = 'other'
    models[1]['name'] = 'another'
    assert len(default_pairs(models)) == 4  # no paper pair: all pairs


def test_peak_memory_sees_an_allocation():
    with PeakMemory('cpu') as probe:
        block = torch.ones(16 * 2**20 // 4)  # 16 MiB, touched
        del block
    if probe.bytes is None:
        pytest.skip(f'no peak-RSS reset here ({probe.method})')
    assert probe.bytes >= 12 * 2**20


def test_every_form_has_its_own_colour():
    from matplotlib.colors import to_hex

    from mmseg_repvgg.benchmark.report import _colors
    keys = CANDIDATE_FORMS + ('compiled', 'compiled_fp32')
    colors = _colors(keys)
    assert len({to_hex(c) for c in colors.values()}) == len(keys)


@pytest.mark.parametrize('run, png', [
    ('2026-11-28_0500.json', 'benchmark.png'),
    ('2026-12-01_1230_avx2.json', 'benchmark_avx2.png'),
])
def test_docs_pictures_replot_from_their_json(run, png, tmp_path):
    """The pictures of docs/benchmark.md are drawn from the runs' JSON
    (no re-measuring): the same code gives the same image size."""
    from PIL import Image

    from mmseg_repvgg.benchmark import write_outputs
    results = json.loads((REPO / 'docs' / 'benchmark_runs' / run).read_text())
    paths = write_outputs(results, str(tmp_path))
    with Image.open(paths['png']) as new, \
            Image.open(REPO / 'docs' / png) as committed:
        assert new.size == committed.size
