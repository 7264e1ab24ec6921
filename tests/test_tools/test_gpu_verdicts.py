"""The GPU check's verdicts on measurements whose verdicts are known:
each model in its own best form, no fp16 form slower than ``reduced``,
fp16 mIoU on the trained toy, AMP training, a broken pipeline."""
import importlib
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def gpu():
    """tools/gpu/ as the package ``gpu`` (as tools/gpu_check.py loads it)."""
    spec = importlib.util.spec_from_file_location('gpu_check_tool',
                                                  REPO / 'tools/gpu_check.py')
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return (importlib.import_module('gpu.verdicts'),
            importlib.import_module('gpu.report'))


def _cell(ms, precision='fp16', status='ok'):
    return dict(
        status=status,
        label='x',
        precision=precision,
        note=None if status == 'ok' else 'why',
        ms=ms,
        peak_mb=100.0,
        max_rel_diff=1e-3,
        label_agreement=0.9)  # random weights: information, never judged


def _model(**forms):
    return {
        form: {
            '1024x2048': cell if isinstance(cell, dict) else _cell(cell)
        }
        for form, cell in forms.items()
    }


def _trainbench(b1g2_s, r101_s):

    def row(name, seconds):
        return dict(
            name=name,
            train=dict(amp=dict(s_per_iter=seconds, peak_mb=2048.0)),
            inference=dict(fps=10.0))

    return dict(
        code=0,
        settings=dict(
            crop=[512, 1024],
            batch=2,
            iters=6,
            warmup=2,
            infer_shape=[1024, 2048]),
        machine='H200',
        rows=[row('B1g2-fast', b1g2_s),
              row('R101-D8', r101_s)])


def _results(measurements, toy_miou=50.0, trainbench=None):
    return dict(
        device='cuda',
        parts=['pool', 'train', 'bench', 'trainbench'],
        sizes=['1024x2048'],
        candidates=['B1g2-fast'],
        baselines=['R50-D8', 'R101-D8'],
        toy_forms=['reduced', 'reduced_cl'],
        fp16=True,
        train=dict(
            command='tools/dist_train.sh CONFIG 1 --amp',
            code=0,
            checkpoint='c.pth',
            deploy_final='d.pth',
            amp=True,
            sync_bn=True),
        tests={
            'fused': dict(code=0, miou=50.0, fused_log=True),
            'unfused': dict(code=0, miou=50.0, fused_log=False),
            'deploy': dict(code=0, miou=50.0),
            'form reduced': dict(code=0, miou=toy_miou),
            'form reduced_cl': dict(code=0, miou=50.05),
            'cuda graphs': dict(code=0, miou=None)
        },
        pool=dict(
            code=0,
            device='H200',
            dtype='float16',
            rows=[
                dict(
                    size='128x256',
                    bins=2,
                    contiguous_ms=0.6,
                    channels_last_ms=12.6,
                    ours_ms=0.7,
                    equal=True)
            ]),
        bench_codes={'1024x2048': 0},
        measurements=measurements,
        trainbench=trainbench or _trainbench(0.2, 0.3))


def _verdict(checks, start):
    found = [status for status, text in checks if text.startswith(start)]
    assert len(found) == 1, (start, checks)
    return found[0]


def test_each_model_in_its_best_form(gpu):
    verdicts, report = gpu
    results = _results({
        'B1g2-fast':
        _model(
            fused=_cell(100.0, 'fp32'),
            fused_cl=_cell(5.0, 'fp32'),  # an ablation: never "best"
            reduced=10.0,
            reduced_cl_lowres_graph=8.0),
        'R50-D8':
        _model(reduced=12.0, reduced_cl_lowres_graph=9.0),
        'R101-D8':
        _model(reduced=20.0, reduced_cl_lowres_graph=15.0),
    })
    measured = results['measurements']
    assert report.best_form(measured, 'B1g2-fast',
                            '1024x2048') == ('reduced_cl_lowres_graph', 8.0)
    checks = verdicts.check_results(results)
    assert _verdict(checks, 'B1g2-fast at 1024x2048: 8.00 ms') == 'PASS'
    # 15 / 8 = 1.88x R101 (>= 1.8), 9 / 8 = 1.12x R50: best against best.
    assert _verdict(
        checks, 'B1g2-fast (reduced_cl_lowres_graph) vs R101-D8'
        ' (reduced_cl_lowres_graph) at 1024x2048') == 'PASS'
    assert _verdict(checks,
                    'B1g2-fast (reduced_cl_lowres_graph) vs R50-D8') == 'PASS'
    assert _verdict(checks,
                    'B1g2-fast at 1024x2048: no fp16 form slower') == 'PASS'
    assert _verdict(checks, 'toy reduced: mIoU 50.0') == 'PASS'
    assert _verdict(checks, 'toy reduced_cl: mIoU 50.05') == 'PASS'
    assert _verdict(checks, 'AMP training: B1g2-fast 0.200') == 'PASS'
    assert _verdict(checks, 'PSP pooling of a contiguous copy') == 'PASS'
    assert _verdict(checks, 'CUDA graph tests') == 'PASS'
    assert not [c for c in checks if c[0] == 'FAIL']
    table = report.render_report(results, checks)
    assert ('| B1g2-fast | `reduced_cl_lowres_graph` 8.00 | 1.12 | 1.88 |'
            in table)
    assert '| form reduced_cl | 50.05 | +0.05 |' in table


def test_targets_missed(gpu):
    verdicts, _ = gpu
    results = _results(
        {
            'B1g2-fast': _model(reduced=10.0, reduced_cl=12.0, autocast=11.0),
            'R50-D8': _model(reduced=9.0),
            'R101-D8': _model(reduced=17.0),
        },
        toy_miou=49.8,
        trainbench=_trainbench(0.4, 0.3))
    checks = verdicts.check_results(results)
    assert _verdict(checks, 'B1g2-fast at 1024x2048: 10.00 ms') == 'FAIL'
    assert _verdict(checks, 'B1g2-fast (reduced) vs R101-D8') == 'FAIL'
    assert _verdict(checks, 'B1g2-fast (reduced) vs R50-D8') == 'FAIL'
    slower = [
        t for s, t in checks
        if 'no fp16 form slower' in t and t.startswith('B1g2-fast')
    ]
    assert slower and 'reduced_cl 12.0 ms' in slower[0]
    assert 'autocast 11.0 ms (autocast casts' in slower[0]
    assert _verdict(checks, 'toy reduced: mIoU 49.8') == 'FAIL'
    assert _verdict(checks, 'AMP training: B1g2-fast 0.400') == 'FAIL'


def test_broken_pipeline_fails(gpu):
    verdicts, _ = gpu
    results = _results(
        {'B1g2-fast': _model(reduced=_cell(None, status='failed'))})
    results['tests']['fused']['miou'] = 49.5
    results['train'].update(amp=False, deploy_final=None)
    results['bench_codes'] = {'1024x2048': 1, 'compiled 1024x2048': None}
    results['part_errors'] = {'trainbench': 'RuntimeError: out of memory'}
    checks = dict((text.split(':')[0], status)
                  for status, text in verdicts.check_results(results))
    assert checks['mIoU fused 49.5 == unfused 50.0 (within 0.01)'] == 'FAIL'
    assert checks['AMP'] == 'FAIL'
    assert checks['training (tools/dist_train.sh CONFIG 1 --amp)'] == 'FAIL'
    assert checks['benchmark 1024x2048'] == 'FAIL'
    assert checks['benchmark compiled 1024x2048'] == 'SKIP'  # budget
    assert checks['B1g2-fast reduced at 1024x2048'] == 'FAIL'
    assert checks['part trainbench crashed'] == 'FAIL'
    # A part left out by --only has no lines at all.
    results['parts'] = ['bench']
    texts = [text for _, text in verdicts.check_results(results)]
    assert not [t for t in texts if t.startswith(('training (', 'toy '))]
