"""The GPU check (issue 19): its CPU dry run, install step and verdicts.

``tools/gpu_check.sh`` runs once on a GPU machine in a later session; here
its dry run (``--device cpu --skip-install``: tiny model, 32x64 images)
goes through every step with the real tools, its install step is checked
without a network, and the PASS/FAIL logic is fed measurements whose
verdicts are known.
"""
import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmseg_repvgg.benchmark.gpu_report import (best_ratio, check_results,
                                               render_report)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def tool():
    """tools/gpu_check.py as a module (its install half is stdlib only)."""
    spec = importlib.util.spec_from_file_location('gpu_check_tool',
                                                  REPO / 'tools/gpu_check.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    proc = subprocess.run([
        'bash', 'tools/gpu_check.sh', '--device', 'cpu', '--skip-install',
        '--out',
        str(out), '--work-dir',
        str(work)
    ],
                          cwd=REPO,
                          env={
                              **os.environ, 'PYTHON': sys.executable
                          },
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # What the CPU cannot do: one SKIP line each, and nothing failed.
    for part in ('--amp training', 'SyncBN in a distributed run',
                 'fp16 forms'):
        assert sum(line.startswith('SKIP') and part in line
                   for line in lines) == 1, part
    assert not [line for line in lines if line.startswith('FAIL')]
    results = json.loads((out / 'gpu_check.json').read_text())
    tests = results['tests']
    assert tests['fused']['miou'] is not None
    assert tests['fused']['miou'] == tests['unfused']['miou']
    assert tests['deploy']['miou'] == tests['unfused']['miou']
    assert tests['fused']['fused_log'] and not tests['unfused']['fused_log']
    assert results['train']['deploy_final']
    measured = results['measurements']
    assert set(measured) == {'toy-tiny', 'R18-D8-tiny'}
    for model in measured.values():
        assert set(model) == {'fused', 'fused_cl'}
        assert all(cell['32x64']['status'] == 'ok' for cell in model.values())
    table = (out / 'gpu_check.md').read_text()
    rows = [
        line for line in table.splitlines()
        if line.startswith('| ') and not line.startswith('| ---')
    ]
    assert len(rows) == 1 + 4  # header, 2 models x 2 forms
    assert any(r.startswith('| toy-tiny | fused fp32 (`fused`)') for r in rows)
    assert '## Checks' in table and '- PASS mIoU fused' in table
    assert (out / 'bench_32x64.json').is_file()
    assert 'tools/train.py' in (out / 'gpu_check.log').read_text()


def test_install_half_is_stdlib_only():
    """It must run on a machine without mmengine, mmcv or mmseg."""
    tree = ast.parse((REPO / 'tools/gpu_check.py').read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module.split('.')[0])
    assert top and top <= set(sys.stdlib_module_names), top


def test_missing_wheelhouse_is_one_line(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tool, 'pending_pins',
                        lambda pins, have: [('mmcv', '2.1.0')])
    code = tool.main([
        '--out',
        str(tmp_path / 'out'), '--wheelhouse',
        str(tmp_path / 'nowhere')
    ])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith('error: no wheelhouse at')
    assert 'bash tools/gpu_wheelhouse.sh' in err[0]
    assert 'carry' in err[0]


def _fake_wheelhouse(tool, root: Path, skip=()):
    root.mkdir()
    shutil.copy(tool.PINS_FILE, root)
    for name, version in tool.read_pins():
        if name in skip:
            continue
        norm = name.replace('-', '_').lower()
        filename = (f'{norm}-{version}.tar.gz' if name == 'mmcv' else
                    f'{norm}-{version}-py3-none-any.whl')
        (root / filename).write_bytes(b'')
    return root


def test_wheelhouse_files(tool, tmp_path):
    pins = tool.read_pins()
    names = [name for name, _ in pins]
    assert {'mmcv', 'mmengine', 'mmsegmentation', 'setuptools'} <= set(names)
    files = tool.wheelhouse_files(
        str(_fake_wheelhouse(tool, tmp_path / 'full')), pins)
    assert set(files) == set(names)
    assert files['mmcv'].endswith('mmcv-2.1.0.tar.gz')
    # A download that did not finish: the missing pins are named.
    partial = _fake_wheelhouse(tool, tmp_path / 'partial', skip=('yapf', ))
    with pytest.raises(tool.InstallError, match=r'lacks yapf==[\d.]+: run'):
        tool.wheelhouse_files(str(partial), pins)
    # One made for other pins.
    (partial / 'gpu_wheelhouse.txt').write_text('mmcv==2.0.0\n')
    with pytest.raises(tool.InstallError, match='other pins'):
        tool.wheelhouse_files(str(partial), pins)


def test_pending_pins(tool):
    pins = [('mmengine', '0.10.7'), ('mmengine-does-not-exist', '1.0'),
            ('setuptools', '81.0.0')]
    assert tool.pending_pins(pins, have_pkg_resources=True) == [pins[1]]
    assert tool.pending_pins(
        pins, have_pkg_resources=False) == [pins[1], pins[2]]


def test_install_steps(tool):
    files = {
        'setuptools': 'wh/setuptools.whl',
        'addict': 'wh/addict.whl',
        'mmcv': 'wh/mmcv-2.1.0.tar.gz'
    }
    pending = [('addict', '2.4.0'), ('mmcv', '2.1.0'),
               ('setuptools', '81.0.0')]
    (name, wheels, env), (_, build, build_env) = tool.install_steps(
        'py', files, pending, jobs=16)
    assert name == 'wheels' and env == {}
    assert wheels[:3] == ['py', '-m', 'pip'] and '--no-index' in wheels
    assert '--no-deps' in wheels  # opencv-python must not be pulled in
    assert wheels[-2:] == ['wh/setuptools.whl', 'wh/addict.whl']
    assert build[-2:] == ['--no-build-isolation', 'wh/mmcv-2.1.0.tar.gz']
    # The ops are built for the CPU: the GPU hidden, CUDA not forced.
    assert build_env == dict(
        MMCV_WITH_OPS='1',
        FORCE_CUDA='0',
        CUDA_VISIBLE_DEVICES='',
        MAX_JOBS='16')
    assert tool.install_steps('py', files, [], jobs=1) == []


def _cell(ms, precision='fp16', diff=1e-3, agree=0.9999, status='ok'):
    return dict(
        status=status,
        label='x',
        precision=precision,
        note=None,
        ms=ms,
        peak_mb=100.0,
        max_rel_diff=diff,
        label_agreement=agree)


def _results(b1g2, r101, r50, b2=None):
    size = '1024x2048'

    def model(forms):
        return {form: {size: cell} for form, cell in forms.items()}

    return dict(
        device='cuda',
        sizes=[size],
        candidates=['B1g2-fast', 'B2-fast'],
        baselines=['R50-D8', 'R101-D8'],
        fp16=True,
        train=dict(
            command='tools/dist_train.sh CONFIG 1 --amp',
            code=0,
            checkpoint='c.pth',
            deploy_final='d.pth',
            amp=True,
            sync_bn=True),
        tests=dict(
            fused=dict(miou=50.0, fused_log=True),
            unfused=dict(miou=50.0, fused_log=False),
            deploy=dict(miou=50.0)),
        bench_codes={size: 0},
        measurements=dict(
            **{
                'B1g2-fast': model(b1g2),
                'R101-D8': model(r101),
                'R50-D8': model(r50)
            }, **({
                'B2-fast': model(b2)
            } if b2 else {})))


def _verdicts(checks, word):
    return [status for status, text in checks if word in text]


def test_targets():
    fused = _cell(40.0, 'fp32', 0.0, 1.0)
    results = _results(
        dict(fused=fused, reduced=_cell(10.0), compiled=_cell(5.0)),
        dict(fused=fused, reduced=_cell(17.0)),
        dict(fused=fused, reduced=_cell(9.0)),
        b2=dict(fused=fused, reduced=_cell(16.0, agree=0.998)))
    checks = check_results(results)
    # Like for like: B1g2-fast's compiled form has no R101 counterpart.
    assert best_ratio(results['measurements'], 'B1g2-fast', 'R101-D8',
                      '1024x2048', ('fp16', ))[0] == pytest.approx(1.7)
    assert _verdicts(checks, 'B1g2-fast (reduced) vs R101-D8') == ['PASS']
    assert _verdicts(checks, 'B1g2-fast (reduced) vs R50-D8') == ['FAIL']
    assert _verdicts(checks, 'B2-fast (reduced) vs R101-D8') == ['PASS']
    assert _verdicts(checks, 'B1g2-fast reduced: logits') == ['PASS']
    assert _verdicts(checks, 'B2-fast reduced: logits') == ['FAIL']
    assert _verdicts(checks, 'mIoU fused') == ['PASS']
    assert _verdicts(checks, 'AMP') == ['PASS']
    table = render_report(results, checks)
    assert '| B1g2-fast | x (`reduced`) | 10.0 | 100 | 0.90 | 1.70 |' in table


def test_broken_pipeline_fails():
    results = _results({}, {}, {})
    results['tests']['fused']['miou'] = 49.5
    results['train'].update(amp=False, deploy_final=None)
    results['bench_codes'] = {'1024x2048': 1, 'compiled': None}
    results['measurements'] = {
        'B1g2-fast': {
            'compiled': {
                '1024x2048': _cell(None, status='failed')
            }
        }
    }
    checks = dict((text.split(':')[0], status)
                  for status, text in check_results(results))
    assert checks['mIoU fused 49.5 == unfused 50.0 (within 0.01)'] == 'FAIL'
    assert checks['AMP'] == 'FAIL'
    assert checks['training (tools/dist_train.sh CONFIG 1 --amp)'] == 'FAIL'
    assert checks['benchmark 1024x2048'] == 'FAIL'
    assert checks['benchmark compiled'] == 'SKIP'  # the budget ran out
    assert checks['B1g2-fast compiled at 1024x2048'] == 'FAIL'


def test_wheelhouse_script_refuses_an_interpreter_without_pkg_resources(
        tmp_path):
    dest = tmp_path / 'wheelhouse'
    proc = subprocess.run(['bash', 'tools/gpu_wheelhouse.sh',
                           str(dest)],
                          cwd=REPO,
                          env={
                              **os.environ, 'PYTHON': 'false'
                          },
                          capture_output=True,
                          text=True)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: false has no '
                                               'pkg_resources')
    assert not dest.exists()
