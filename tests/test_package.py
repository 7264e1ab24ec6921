"""The package's seams: what ``import mmseg_repvgg`` loads, module sizes,
and mmseg's own tools refusing a checkpoint that does not fit."""
import os
import os.path as osp
import pathlib
import subprocess
import sys

import mmseg

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'mmseg_repvgg'
#: Packages a training user must not pay for at import.
DEPLOY_WING = ('mmseg_repvgg.deploy', 'mmseg_repvgg.apis',
               'mmseg_repvgg.benchmark', 'onnxruntime', 'openvino', 'nncf')


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=300,
                          **kwargs)


def test_import_registers_the_plugin_and_loads_no_deploy_code():
    # A fresh process: the suite itself has imported the deploy wing.
    result = _python(
        'import sys, mmseg_repvgg\n'
        'from mmseg.registry import HOOKS, LOOPS, MODELS\n'
        'assert MODELS.get("RepVGG") and HOOKS.get("ReparamHook")\n'
        'assert LOOPS.get("DeployFormTestLoop")\n'
        'for name in ("CheckpointFitHook", "FuseBeforeTestHook", '
        '"FusedValHook", "SaveDeployHook"):\n'
        '    assert HOOKS.get(name), name\n'
        f'wing = {DEPLOY_WING!r}\n'
        'print("loaded:", *sorted(m for m in sys.modules '
        'if m.startswith(wing)))\n')
    assert result.returncode == 0, result.stderr
    assert 'loaded:' in result.stdout.splitlines()  # nothing after it


def test_no_module_is_over_400_lines():
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob('*.py')
    }
    assert sizes  # the walk found the package
    assert {name: n for name, n in sizes.items() if n > 400} == {}


def test_mmseg_test_tool_refuses_a_train_checkpoint_for_a_deploy_config(
        tmp_path, tiny_seg_cfg, tiny_seg_checkpoint):
    """mmseg's own tools/test.py (from its wheel) stops on our error.

    Without the config's CheckpointFitHook mmengine loads the pair
    non-strictly, warns, and scores random weights with exit 0. mmseg's
    tool shows the error as a traceback whose last line is the error (ours
    print its one line).
    """
    from mmseg_repvgg.deploy import reparam_checkpoint
    deploy = tmp_path / 'deploy' / 'tiny_deploy.pth'
    reparam_checkpoint(
        tiny_seg_cfg,
        str(tiny_seg_checkpoint),
        str(deploy),
        shape=(1, 3, 32, 64))
    script = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
    assert osp.isfile(script)
    result = subprocess.run([
        sys.executable, script,
        str(deploy.with_suffix('.py')), f'safe://{tiny_seg_checkpoint}',
        '--work-dir',
        str(tmp_path / 'mmseg_test')
    ],
                            capture_output=True,
                            text=True,
                            timeout=300,
                            cwd=tmp_path,
                            env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    error = 'mmseg_repvgg.errors.CheckpointError: '
    assert last.startswith(error), result.stderr[-2000:]
    assert 'train-time checkpoint' in last
    assert 'tools/reparam.py' in last
    # Nothing was scored: no test iteration ran, no metric was printed.
    assert 'Iter(test)' not in result.stdout + result.stderr
    assert 'mAcc' not in result.stdout + result.stderr
