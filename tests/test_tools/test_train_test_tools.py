"""tools/train.py and tools/test.py: the real entry points, and their checks.

One short training (2 iterations of a tiny model on 32x64 toy images) and a
test of its checkpoint run as subprocesses; the argument checks run
in-process through ``run_cli`` and the tools' ``main``.
"""
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from mmengine.config import Config

from mmseg_repvgg import cli
from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.errors import CheckpointError, ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / 'configs' / 'pspnet_repvgg_toy_cityscapes.py')


def run_entry_point(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, *map(str, args)],
                          cwd=cwd or REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_then_test_through_the_entry_points(tmp_path, tiny_toy_options):
    work_dir = tmp_path / 'work'
    train = run_entry_point(REPO / 'tools' / 'train.py', TOY, '--work-dir',
                            work_dir, '--cfg-options', *tiny_toy_options)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'best_mIoU_epoch_1.pth').is_file()
    assert (work_dir / 'deploy_final.pth').is_file()  # ReparamHook
    last = (work_dir / 'last_checkpoint').read_text().strip()
    assert Path(last) == work_dir / 'epoch_1.pth'

    test_dir, show_dir, out_dir = (
        tmp_path / name for name in ('test', 'show', 'out'))
    test = run_entry_point(REPO / 'tools' / 'test.py', TOY, last, '--work-dir',
                           test_dir, '--show-dir', show_dir, '--out', out_dir,
                           '--cfg-options', *tiny_toy_options)
    log = test.stdout + test.stderr
    assert test.returncode == 0, log[-3000:]
    assert 'ReparamHook: fused' in log  # tested re-parameterized
    assert 'per class results' in log
    (metrics_file, ) = test_dir.glob('*/*.json')
    metrics = json.loads(metrics_file.read_text())
    assert 0 <= metrics['mIoU'] <= 100
    # Ground truth beside prediction for each of the 2 val images.
    assert len(list((show_dir / 'vis_data' / 'vis_image').glob('*.png'))) == 2
    assert len(list(out_dir.glob('*.png'))) == 2


def test_missing_config_is_one_line_and_exit_2(tmp_path):
    result = run_entry_point(REPO / 'tools' / 'train.py', tmp_path / 'nope.py')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        'error: config file not found')
    assert 'Traceback' not in result.stderr


def test_test_tool_refuses_a_missing_checkpoint(tmp_path, capsys):
    test_tool = load_tool('test')
    argv = [TOY, str(tmp_path / 'missing.pth'), '--work-dir', str(tmp_path)]
    assert run_cli(test_tool.main, argv) == 2
    assert 'checkpoint file not found' in capsys.readouterr().err


def test_train_tool_refuses_an_unwritable_work_dir(tmp_path, capsys):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    argv = [TOY, '--work-dir', str(blocker / 'work')]
    assert run_cli(load_tool('train').main, argv) == 2
    assert 'is a file, not a directory' in capsys.readouterr().err


def test_missing_data_root_is_a_dataset_error(tmp_path, tiny_toy_options):
    options = [opt for opt in tiny_toy_options if '.data_root=' not in opt] + [
        f'{split}_dataloader.dataset.data_root={tmp_path / "no_data"}'
        for split in ('train', 'val', 'test')
    ]
    argv = [TOY, '--work-dir', str(tmp_path / 'work'), '--cfg-options']
    with pytest.raises(DatasetError, match='no_data'):
        load_tool('train').main(argv + options)


def test_load_config_errors(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('model = dict(\n')
    with pytest.raises(ConfigError, match='cannot load the config'):
        cli.load_config(str(bad))
    with pytest.raises(ConfigError, match='does not fit'):
        cli.load_config(TOY, {'param_scheduler.5.end': 1})
    cfg = cli.load_config(TOY, {'train_cfg.max_epochs': 3})
    assert cfg.train_cfg.max_epochs == 3


def test_work_dir_priority(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config(dict(work_dir=None))
    assert cli.set_work_dir(cfg, None, 'configs/x_y.py') == \
        './work_dirs/x_y'
    # Checked, not made: the Runner makes it, so an early failure leaves
    # no empty work dir.
    assert not (tmp_path / 'work_dirs').exists()
    cfg = Config(dict(work_dir='from_cfg'))
    assert cli.set_work_dir(cfg, None, 'configs/x_y.py') == 'from_cfg'
    assert cli.set_work_dir(cfg, 'from_cli', 'configs/x_y.py') == 'from_cli'


def test_resume_and_amp_and_scale_lr(tmp_path, monkeypatch):
    cfg = Config(
        dict(
            resume=False,
            load_from=None,
            optim_wrapper=dict(type='OptimWrapper'),
            auto_scale_lr=dict(enable=False, base_batch_size=16)))
    cli.set_resume(cfg, 'auto')
    assert cfg.resume and cfg.load_from is None
    with pytest.raises(CheckpointError, match='not found'):
        cli.set_resume(cfg, str(tmp_path / 'missing.pth'))
    checkpoint = tmp_path / 'epoch_1.pth'
    checkpoint.write_bytes(b'')
    cli.set_resume(cfg, str(checkpoint))
    assert cfg.load_from == str(checkpoint)
    cli.enable_auto_scale_lr(cfg)
    assert cfg.auto_scale_lr.enable
    with pytest.raises(ConfigError, match='base_batch_size'):
        cli.enable_auto_scale_lr(Config(dict()))
    monkeypatch.setattr(cli, 'get_device', lambda: 'cpu')
    with pytest.raises(ConfigError, match='needs a GPU'):
        cli.enable_amp(cfg)
    monkeypatch.setattr(cli, 'get_device', lambda: 'cuda')
    cli.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'


def test_show_dir_switches_the_visualizer_on(tmp_path):
    cfg = cli.load_config(TOY)
    cli.enable_visualization(cfg, False, str(tmp_path / 'show'), 2)
    assert cfg.default_hooks.visualization.draw
    assert cfg.visualizer.save_dir == str(tmp_path / 'show')
    del cfg.default_hooks['visualization']
    with pytest.raises(ConfigError, match='SegVisualizationHook'):
        cli.enable_visualization(cfg, True, None, 2)


def test_tta_wraps_the_model():
    cfg = cli.load_config(TOY)
    segmentor = cfg.model
    cli.enable_tta(cfg)
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module == segmentor
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline


def test_no_third_party_warnings_reach_the_user():
    """mmseg's "draw is False" is gone at its cause (the configs' hook), the
    int8 probe no longer calls torch's deprecated quantize_per_tensor."""
    from mmseg.registry import HOOKS, VISUALIZERS
    cfg = cli.load_config(TOY)
    VISUALIZERS.build(dict(cfg.visualizer, name='no_warnings'))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        HOOKS.build(cfg.default_hooks.visualization)
    assert [str(w.message) for w in caught] == []
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONWARNINGS', None)
    result = subprocess.run([sys.executable, 'tools/test.py', '--list-forms'],
                            cwd=REPO,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert (result.returncode, result.stderr) == (0, '')
