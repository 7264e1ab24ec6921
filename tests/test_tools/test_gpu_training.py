"""Training and testing on a GPU through the tools, as a user runs them.

The tiny toy config trained with ``bash tools/dist_train.sh CONFIG 1 --amp``
and SyncBN (one process: the Runner is distributed and keeps SyncBN), then
its checkpoint scored by ``tools/test.py`` fused, unfused, as
``deploy_final.pth`` and in a CUDA graph form, side by side, in true fp32
(``NVIDIA_TF32_OVERRIDE=0``: TF32 rounds about as coarsely as fp16).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from test_dist import free_port

from mmseg_repvgg.checkpoint.safe_load import safe_torch_load

pytestmark = pytest.mark.cuda

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / 'configs' / 'pspnet_repvgg_toy_cityscapes.py')
EPOCHS = 2  # 2 iterations each
SYNC_BN = [
    f'model.{part}.norm_cfg.type=SyncBN'
    for part in ('backbone', 'decode_head', 'auxiliary_head')
]
FUSED_LOG = re.compile(r'ReparamHook: fused \d+ RepVGG blocks')
#: (work dir, output, finished process) of each training: one per module.
_TRAINED = {}


def _start(command, **env) -> subprocess.Popen:
    """``command`` started in the repository root, output to a pipe."""
    env = dict(
        os.environ, PYTHON=sys.executable, PYTHONWARNINGS='ignore', **env)
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


@pytest.fixture
def amp_run(tmp_path_factory, tiny_toy_options):
    """The tiny toy trained for 2 epochs with AMP and SyncBN through the
    launcher: ``(work dir, output, finished process)``."""
    key = tuple(tiny_toy_options)
    if key not in _TRAINED:
        work = tmp_path_factory.mktemp('amp_sync_bn')
        options = [
            o for o in tiny_toy_options
            if not o.startswith(('train_cfg.max_epochs',
                                 'param_scheduler.0.end'))
        ]
        options += [
            f'train_cfg.max_epochs={EPOCHS}',
            f'param_scheduler.0.end={EPOCHS}', *SYNC_BN
        ]
        command = [
            'bash', 'tools/dist_train.sh', TOY, '1', '--amp', '--work-dir',
            str(work), '--cfg-options', *options
        ]
        proc = _start(command, PORT=str(free_port()))
        _TRAINED[key] = work, proc.communicate(timeout=300)[0], proc
    return _TRAINED[key]


def test_amp_and_sync_bn_training_through_the_launcher(amp_run):
    work, log, proc = amp_run
    assert proc.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log
    assert 'reverted to BatchNormXd' not in log
    dumped = Config.fromfile(str(work / Path(TOY).name))
    assert dumped.model.backbone.norm_cfg.type == 'SyncBN'
    checkpoint = safe_torch_load(str(work / f'epoch_{EPOCHS}.pth'))
    assert 'loss_scaler' in checkpoint['optimizer']  # AmpOptimWrapper's
    assert (work / 'deploy_final.pth').is_file()


def _test_runs(work: Path) -> dict:
    """tools/test.py's arguments per run: the config the training dumped
    (the tiny options in it) with each checkpoint or form."""
    config = str(work / Path(TOY).name)
    hooks = [hook['type'] for hook in Config.fromfile(config).custom_hooks]
    unfused = (f'custom_hooks.{hooks.index("ReparamHook")}'
               '.fuse_before_test=False')
    trained = str(work / f'epoch_{EPOCHS}.pth')
    return dict(
        fused=[config, trained],
        unfused=[config, trained, '--cfg-options', unfused],
        deploy=[config, str(work / 'deploy_final.pth')],
        graph=[config, trained, '--deploy-form', 'reduced_cl_lowres_graph'])


def _miou(test_dir: Path) -> float:
    (metrics, ) = test_dir.glob('*/*.json')
    return json.loads(metrics.read_text())['mIoU']


def test_fused_unfused_and_deploy_score_alike(amp_run, tmp_path):
    work, _, trained = amp_run
    assert trained.returncode == 0, 'the training failed (see its test)'
    procs = {}
    for name, args in _test_runs(work).items():  # side by side: start-up
        command = [sys.executable, 'tools/test.py', *args]
        procs[name] = _start(
            command + ['--work-dir', str(tmp_path / name)],
            NVIDIA_TF32_OVERRIDE='0')
    logs = {name: p.communicate(timeout=300)[0] for name, p in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, logs[name][-3000:])
    assert FUSED_LOG.search(logs['fused'])
    assert not FUSED_LOG.search(logs['unfused'])
    miou = {name: _miou(tmp_path / name) for name in procs}
    # mmseg rounds to two decimals; fusion changes fp32 rounding only.
    assert miou['fused'] == pytest.approx(miou['unfused'], abs=0.01), miou
    assert miou['deploy'] == pytest.approx(miou['unfused'], abs=0.01), miou
    # A CUDA graph form scored by the config's own evaluator (its label).
    assert 'CUDA graph' in logs['graph']
    assert 0 <= miou['graph'] <= 100
