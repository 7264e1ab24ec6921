"""tools/gpu_check.sh: its CPU dry run, its budget, its refusals, and those
of the offline set-up it runs (``WHEELHOUSE=DIR tools/setup_env.sh``).

On a CUDA machine the command installs from a wheelhouse, runs the CUDA
tests (``pytest -m cuda``) and the benchmarks; its dry run here
(``--device cpu --skip-install``: tiny models at 32x64) takes every step
with the real tools, and the CUDA tests are selected and skipped with the
reason.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORMS = ('fused', 'reduced', 'reduced_cl', 'reduced_lowres',
         'reduced_cl_lowres', 'reduced_graph', 'reduced_cl_lowres_graph')
#: What the CUDA tests check (the GPU check's old list), one test each.
CUDA_TESTS = (
    'test_tools/test_gpu_training.py::'
    'test_amp_and_sync_bn_training_through_the_launcher',
    'test_tools/test_gpu_training.py::'
    'test_fused_unfused_and_deploy_score_alike',
    *(f'test_deploy/test_gpu_forms.py::test_gpu_form_against_fused_fp32'
      f'[{form}]' for form in FORMS[1:] + ('autocast', )),
    'test_deploy/test_cuda_graphs.py::'
    'test_graph_replays_and_captures_again_for_a_new_shape[reduced_graph]',
    'test_deploy/test_psp_pooling.py::'
    'test_pool_equals_contiguous_pool_on_cuda_fp16[size0-6]',
)
STEPS = ('CUDA tests', 'benchmark 32x64', 'training benchmark')


def run_script(script, *args, **env):
    return subprocess.run(['bash', f'tools/{script}', *map(str, args)],
                          cwd=REPO,
                          env={
                              **os.environ, 'PYTHON': sys.executable,
                              **env
                          },
                          capture_output=True,
                          text=True,
                          timeout=300)


def test_dry_run(tmp_path):
    out = tmp_path / 'out'
    proc = run_script('gpu_check.sh', '--device', 'cpu', '--skip-install',
                      '--out', out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (out / 'gpu_check.md').read_text()
    assert proc.stdout == report
    # The CUDA tests, selected by their marker and skipped with the reason.
    log = (out / 'gpu_check.log').read_text()
    for test in CUDA_TESTS:
        assert f'tests/{test} SKIPPED' in log, test
    for path in {test.split('::')[0] for test in CUDA_TESTS}:
        assert re.search(
            rf'SKIPPED \[\d+\] tests/{path}\S*: needs a CUDA device', report)
    assert re.search(r'\n=+ \d+ skipped, \d+ deselected', report)
    # The tools' tables as they wrote them; the ratios of the same run.
    for table in ('benchmark_32x64/benchmark.md',
                  'train_benchmark/train_benchmark.md'):
        assert (out / table).read_text().strip() in report, table
    assert '| toy_tiny vs r18_tiny |' in report
    bench = json.loads((out / 'benchmark_32x64/benchmark.json').read_text())
    status = {
        (model['name'], form['form']): form['status']
        for model in bench['models']
        for form in model['forms']
    }
    assert set(status) == {(model, form)
                           for model in ('toy_tiny', 'r18_tiny')
                           for form in FORMS}
    assert status['toy_tiny', 'fused'] == status['r18_tiny', 'fused'] == 'ok'
    assert status['toy_tiny', 'reduced_graph'] == 'skipped'  # needs CUDA
    train = json.loads(
        (out / 'train_benchmark/train_benchmark.json').read_text())
    assert train['dry_run']
    names = [row['name'] for row in train['rows']]
    assert names == ['toy-tiny', 'R18-D8-tiny']
    for step in STEPS:
        assert re.search(rf'\| {step} \| ok \| \d+ \|', report), step


def test_a_spent_budget_skips_the_steps_and_says_so(tmp_path):
    out = tmp_path / 'out'
    proc = run_script('gpu_check.sh', '--device', 'cpu', '--skip-install',
                      '--budget', '1', '--out', out)
    # The CUDA tests did not run: not a pass.
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = (out / 'gpu_check.md').read_text()
    for step in STEPS:
        assert (f'| {step} | skipped: the budget (--budget 1) is spent |'
                in report), step
    written = sorted(path.name for path in out.iterdir())
    assert written == ['gpu_check.log', 'gpu_check.md']


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


@pytest.mark.parametrize(
    'args, message',
    [(['--device', 'tpu'], '--device tpu: choose cuda or cpu'),
     (['--device'], '--device needs a value'),
     (['--device', 'cpu', '--budget', 'soon'], '--budget soon: a whole'),
     (['--device', 'cpu', '--wheelhouse', 'nowhere'], 'no wheelhouse at '),
     (['--device', 'cuda', '--skip-install'], '--device cuda: '),
     (['--device', 'cpu', '--steps'], 'unknown argument --steps')])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    if message.startswith('--device cuda') and _cuda():
        pytest.skip('this machine has a CUDA device')
    out = tmp_path / 'out'
    proc = run_script('gpu_check.sh', '--out', out, *args)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1 and err[0].startswith(f'error: {message}'), err
    assert proc.stdout == '' and not out.exists()


def test_out_must_be_a_folder(tmp_path):
    taken = tmp_path / 'file'
    taken.write_text('mine')
    proc = run_script('gpu_check.sh', '--device', 'cpu', '--skip-install',
                      '--out', taken)
    assert proc.returncode == 2
    assert proc.stderr == f'error: --out {taken} is not a folder\n'
    assert taken.read_text() == 'mine'


def test_setup_refuses_a_missing_or_stale_wheelhouse(tmp_path):
    missing = run_script(
        'setup_env.sh',
        WHEELHOUSE=str(tmp_path / 'nowhere'),
        VENV=str(tmp_path / 'venv'))
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        f'error: WHEELHOUSE={tmp_path / "nowhere"} is not a folder')
    stale = tmp_path / 'wheelhouse'
    stale.mkdir()
    (stale / 'gpu_wheelhouse.txt').write_text('mmcv==2.0.0\n')
    proc = run_script('setup_env.sh', WHEELHOUSE=str(stale))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f'error: WHEELHOUSE={stale} was not filled for '
        'tools/gpu_wheelhouse.txt as it is now; run '
        'bash tools/gpu_wheelhouse.sh again'
    ]
    assert not (tmp_path / 'venv').exists()


def test_wheelhouse_script_refuses_an_interpreter_without_pkg_resources(
        tmp_path):
    dest = tmp_path / 'wheelhouse'
    proc = run_script('gpu_wheelhouse.sh', dest, PYTHON='false')
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: false has no '
                                               'pkg_resources')
    assert not dest.exists()
