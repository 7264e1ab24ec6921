"""How the tools end: Ctrl-C, early failures, the first line of stderr.

* Ctrl-C (SIGINT sent to a child's process group mid-run, at a point a
  patched step marks with a flag file, so no timing is involved): one
  line, exit 130, what was finished kept, no temporary file left.
* A failure before any output leaves no work dir behind.
* A failure's first stderr line is its ``error:`` line, third-party noise
  filtered (the real entry point, in a subprocess, warnings not ignored).

Refusals of output paths (a directory given as a file, a file as a
directory) are cases of tests/test_tools/test_tool_errors.py.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_tool_errors import TOY, make_inputs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """The checkpoints of tests/test_tools/test_tool_errors.py's cases."""
    return make_inputs(tmp_path_factory.mktemp('inputs'))


# Runs tools/TOOL.py as ``python tools/TOOL.py ARGS`` would, with one step
# patched to touch FLAG and wait for the test's SIGINT at its N-th call.
DRIVER = """
import importlib, pathlib, runpy, sys, time
tool, target, n, flag = sys.argv[1:5]
module_name, _, attr = target.rpartition('.')
owner = importlib.import_module(module_name.rsplit(':', 1)[0])
if ':' in module_name:
    owner = getattr(owner, module_name.rsplit(':', 1)[1])
original, calls = getattr(owner, attr), []

def wait_for_sigint(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(n):
        pathlib.Path(flag).touch()
        time.sleep(600)
    return original(*args, **kwargs)

setattr(owner, attr, wait_for_sigint)
sys.argv = [tool] + sys.argv[5:]
runpy.run_path(tool, run_name='__main__')
"""


def _env(tmp: Path) -> dict:
    """The tool's environment, its TMPDIR at ``tmp`` (a link to a folder
    with a short path: multiprocessing binds an AF_UNIX socket in TMPDIR to
    share a dataloader worker's tensors, and a path over 107 bytes fails
    there, which left the main process waiting forever for its first
    batch)."""
    short = tempfile.mkdtemp(prefix='t', dir=tmp.parent.parent)
    tmp.symlink_to(short, target_is_directory=True)
    return dict(os.environ, OMP_NUM_THREADS='1', TMPDIR=short)


def _start(tool: str, target: str, call: int, args: list, flag: Path,
           tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([
        sys.executable, '-c', DRIVER, f'tools/{tool}.py', target,
        str(call),
        str(flag), *map(str, args)
    ],
                            cwd=REPO,
                            env=_env(tmp_path / 'tmp'),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True,
                            start_new_session=True)


def interrupt(tool: str, target: str, call: int, args: list,
              tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``tool``, send SIGINT once ``target`` is called the ``call``-th
    time; return the finished process (stdout, stderr as text)."""
    flag = tmp_path / 'waiting'
    proc = _start(tool, target, call, args, flag, tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not flag.exists() and proc.poll() is None:
            late = time.monotonic() > deadline
            assert not late, 'the tool never reached the step'
            time.sleep(0.2)
        # As Ctrl-C in a terminal: to the whole process group (dataloader
        # workers included).
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # a failed test leaves no process behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def ends_in_one_line(result, line: str) -> None:
    assert result.returncode == 130, result.stderr
    assert 'Traceback' not in result.stderr, result.stderr
    assert 'KeyboardInterrupt' not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith(line), result.stderr


def no_temporary_files(*roots: Path) -> None:
    for root in roots:
        assert [p for p in root.rglob('*') if p.name.endswith('.tmp')] == []
    # TMPDIR: nothing of the run's; torch keeps its compile cache there.
    left = (roots[0].parent / 'tmp').iterdir()
    assert [p for p in left if not p.name.startswith('torchinductor_')] == []


def test_ctrl_c_in_the_benchmark_keeps_the_forms_measured(
        tiny_seg_cfg, tmp_path):
    out_dir = tmp_path / 'bench'
    args = [
        f'{tiny_seg_cfg.filename}@fused,lowres,winograd', '--baselines',
        '--shape', '32', '64', '--warmup', '1', '--runs', '1', '--device',
        'cpu', '--threads', '1', '--matmul-size', '64', '--conv-shape', '8',
        '8', '8', '--profile-forms', 'fused', '--out-dir', out_dir
    ]
    result = interrupt('benchmark', 'mmseg_repvgg.benchmark.run.measure_form',
                       2, args, tmp_path)
    ends_in_one_line(
        result, 'interrupted (Ctrl-C); kept the forms measured so far (1) in '
        f'{out_dir}/benchmark.json')
    results = json.loads((out_dir / 'benchmark.json').read_text())
    assert results['interrupted'] is True
    (model, ) = results['models']
    assert [f['form'] for f in model['forms']] == ['fused']
    assert model['forms'][0]['status'] == 'ok'
    assert 'Interrupted (Ctrl-C)' in (out_dir / 'benchmark.md').read_text()
    assert (out_dir / 'benchmark.png').stat().st_size > 0
    # The fused form was profiled: kineto's lines are filtered.
    assert 'USDT' not in result.stderr
    no_temporary_files(out_dir)


def test_ctrl_c_in_the_test_tool_keeps_the_label_maps_written(
        tiny_seg_cfg, tiny_seg_checkpoint, tmp_path):
    out, work = tmp_path / 'labels', tmp_path / 'work'
    args = [
        tiny_seg_cfg.filename, tiny_seg_checkpoint, '--out', out, '--work-dir',
        work, '--cfg-options', 'test_dataloader.num_workers=1'
    ]
    result = interrupt('test', 'mmengine.runner:TestLoop.run_iter', 2, args,
                       tmp_path)
    ends_in_one_line(result, 'interrupted (Ctrl-C)')
    # Mid-run: the first image done, the second never.
    assert 'Iter(test) [1/4]' in result.stdout
    assert 'Iter(test) [2/4]' not in result.stdout
    assert len(list(out.glob('*.png'))) == 1  # the first image's
    no_temporary_files(out, work)


@pytest.mark.parametrize(
    'tool, args',
    [('test', ['$TOY', '$IN/other_arch.pth']),
     ('test', ['$TOY', '$IN/good.pth', '--deploy-form', 'winograd_fast']),
     ('train', ['$TOY', '--cfg-options', 'load_from=$IN/deploy.pth']),
     ('train', ['$TOY', '--cfg-options', 'model.backbone.archh=B1'])],
    ids=['wrong arch', 'wrong form', 'deploy/train mismatch', 'typo'])
def test_early_failure_leaves_no_work_dir(tool, args, inputs, tmp_path,
                                          run_tool, monkeypatch):
    monkeypatch.chdir(REPO)
    work = tmp_path / 'new' / 'work'
    args = [a.replace('$TOY', TOY).replace('$IN', str(inputs)) for a in args]
    code, err = run_tool(tool, *args, '--work-dir', work)
    assert code == 2 and err.startswith('error: '), err
    assert not (tmp_path / 'new').exists()


def run_entry(tool: str, *args, tmp_path: Path) -> subprocess.CompletedProcess:
    """``python tools/TOOL.py ARGS``, warnings as a user gets them."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONWARNINGS', None)
    return subprocess.run(
        [sys.executable, f'tools/{tool}.py', *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300)


def test_first_line_is_the_error_after_a_model_build(inputs, tmp_path):
    """The checkpoint check builds the model (mmseg's loss warnings, the
    pkg_resources reloads): none of it before the error."""
    work = tmp_path / 'work'
    result = run_entry(
        'test',
        TOY,
        inputs / 'other_arch.pth',
        '--work-dir',
        work,
        tmp_path=tmp_path)
    assert result.returncode == 2
    (line, ) = result.stderr.splitlines()
    assert line.startswith('error: ') and 'other_arch.pth' in line
    assert not work.exists()


def test_missing_data_root_is_reported_before_the_config_dump(tmp_path):
    work = tmp_path / 'work'
    result = run_entry(
        'train',
        TOY,
        '--work-dir',
        work,
        '--cfg-options',
        f'train_dataloader.dataset.data_root={tmp_path / "no_data"}',
        tmp_path=tmp_path)
    assert result.returncode == 2
    (line, ) = result.stderr.splitlines()
    assert line.startswith(f'error: {tmp_path / "no_data"}: dataset root')
    assert result.stdout == ''  # the Runner never started
    assert not work.exists()


def test_collate_lookup_under_the_mmseg_scope_is_quiet(log_lines):
    """mmseg_repvgg.registry: the Runner's and MMSegInferencer's lookup of
    a collate function finds mmengine's, without 'Failed to search'."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import FUNCTIONS
    with FUNCTIONS.switch_scope_and_registry('mmseg') as registry:
        assert registry.get('pseudo_collate') is pseudo_collate
    assert not [m for m in log_lines if 'Failed to search' in m]
