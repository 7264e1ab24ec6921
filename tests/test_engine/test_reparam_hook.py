"""The reparam hooks in mmengine's Runner: the checkpoint fit check, test,
fused validation, deploy files; ReparamHook as one entry for all of them.

Fixtures (tiny PSPNet-RepVGG config, data and checkpoint) are in
conftest.py; every run is a few iterations on 32x64 images.
"""
import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import EMAHook, Hook
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner

from mmseg_repvgg.checkpoint import build_segmentor, load_segmentor
from mmseg_repvgg.checkpoint.safe_load import SAFE_SCHEME, safe_torch_load
from mmseg_repvgg.compare import relative_error
from mmseg_repvgg.deploy import artifacts, reparam_checkpoint
from mmseg_repvgg.engine import (CheckpointFitHook, FuseBeforeTestHook,
                                 FusedValHook, ReparamHook, SaveDeployHook)
from mmseg_repvgg.engine.hooks.checkpoint_fit_hook import load_purpose
from mmseg_repvgg.errors import CheckpointError
from mmseg_repvgg.models import FusionMismatchError, segmentor_logits
from mmseg_repvgg.models.reparam import is_batchnorm, reparameterize_model


class Probe(Hook):
    """Records what the test and val loops ran and produced."""

    priority = 'LOWEST'

    def __init__(self):
        self.batches, self.logits, self.val_models = [], [], []

    def after_test_iter(self, runner, batch_idx, data_batch, outputs):
        self.batches.append(copy.deepcopy(data_batch))
        self.logits.append(torch.stack([o.seg_logits.data for o in outputs]))

    def after_val_iter(self, runner, batch_idx, data_batch, outputs):
        self.val_models.append(runner.model.val_step.__self__)


def make_runner(cfg, name, **overrides):
    cfg = copy.deepcopy(cfg)
    cfg.experiment_name = name  # one logger and visualizer per runner
    cfg.work_dir = str(Path(cfg.work_dir) / name)
    cfg.merge_from_dict(overrides)
    runner = Runner.from_cfg(cfg)
    probe = Probe()
    runner.register_hook(probe)
    return runner, probe


def count_norms(model):
    return sum(is_batchnorm(m) for m in model.modules())


def log_text(runner):
    return ''.join(p.read_text() for p in Path(runner.log_dir).glob('*.log'))


@torch.no_grad()
def test_hook_fuses_before_test(tiny_seg_cfg, tiny_seg_checkpoint):
    runner, probe = make_runner(
        tiny_seg_cfg, 'test', load_from=str(tiny_seg_checkpoint))
    metrics = runner.test()

    assert 'mIoU' in metrics and len(probe.logits) == 4
    assert count_norms(runner.model) == 0
    assert not runner.model.with_auxiliary_head
    assert all(m.deploy for m in runner.model.backbone.modules()
               if hasattr(m, 'branch_reparam'))
    assert 'ReparamHook: fused 6 RepVGG blocks' in log_text(runner)
    # The test loop's logits are the unfused model's (eval mode).
    unfused, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    assert count_norms(unfused) > 0
    for batch, logits in zip(probe.batches, probe.logits):
        expected = torch.stack(
            [o.seg_logits.data for o in unfused.test_step(batch)])
        assert relative_error(expected, logits)[1] < 1e-5


def test_fused_validation_leaves_training_bit_identical(tiny_seg_cfg):
    runs = {}
    for fused_val in (True, False):
        runner, probe = make_runner(
            tiny_seg_cfg,
            f'val_fused_{fused_val}',
            custom_hooks=[dict(type='ReparamHook', validate_fused=fused_val)])
        runner.train()
        runs[fused_val] = runner, probe
    (fused_run, fused_probe), (plain_run,
                               plain_probe) = runs[True], runs[False]

    # The fused run validated a BN-free copy, the plain run the model.
    assert len(fused_probe.val_models) == len(plain_probe.val_models) == 8
    assert all(count_norms(m) == 0 for m in fused_probe.val_models)
    assert all(m is plain_run.model for m in plain_probe.val_models)
    assert 'val_step' not in vars(fused_run.model)  # restored
    # Weights, BN statistics and optimizer state: bit-identical.
    fused_state = fused_run.model.state_dict()
    plain_state = plain_run.model.state_dict()
    assert count_norms(fused_run.model) > 0
    assert fused_state.keys() == plain_state.keys()
    for key in fused_state:
        assert torch.equal(fused_state[key], plain_state[key]), key
    fused_optim = fused_run.optim_wrapper.optimizer.state_dict()['state']
    plain_optim = plain_run.optim_wrapper.optimizer.state_dict()['state']
    assert fused_optim.keys() == plain_optim.keys() and fused_optim
    for key in fused_optim:
        assert torch.equal(fused_optim[key]['momentum_buffer'],
                           plain_optim[key]['momentum_buffer'])

    # Fused validation scores what unfused validation scores, so the same
    # checkpoint is kept as the best.
    def val_mious(run):
        return list(run.message_hub.get_scalar('val/mIoU').data[0])

    assert len(val_mious(fused_run)) == 2
    assert val_mious(fused_run) == pytest.approx(
        val_mious(plain_run), abs=1e-6)
    best = [
        Path(run.message_hub.get_info('best_ckpt')).name
        for run in (fused_run, plain_run)
    ]
    assert best[0] == best[1] and best[0].startswith('best_mIoU_iter_')

    # When training ends, the final and best weights ship in deploy form.
    work_dir = Path(fused_run.work_dir)
    for name in ('deploy_final', 'deploy_best_mIoU_iter_4'):
        assert (work_dir / f'{name}.pth').is_file()
        assert (work_dir / f'{name}.py').is_file()
    deployed, checkpoint = load_segmentor(
        Config.fromfile(str(work_dir / 'deploy_final.py')),
        str(work_dir / 'deploy_final.pth'))
    assert count_norms(deployed) == 0
    assert checkpoint['meta']['iter'] == 4
    trained = fused_run.model.eval()
    inputs = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert relative_error(
            segmentor_logits(trained, inputs),
            segmentor_logits(deployed, inputs))[1] < 1e-5


@pytest.fixture
def deploy_checkpoint(tiny_seg_cfg, tiny_seg_checkpoint, tmp_path):
    out = tmp_path / 'deploy' / 'tiny_deploy.pth'
    reparam_checkpoint(
        tiny_seg_cfg, str(tiny_seg_checkpoint), str(out), shape=(1, 3, 32, 64))
    return out


def test_deploy_checkpoint_tests_with_either_config(tiny_seg_cfg,
                                                    deploy_checkpoint):
    deploy_cfg = Config.fromfile(str(deploy_checkpoint.with_suffix('.py')))
    deploy_run, deploy_probe = make_runner(
        deploy_cfg, 'deploy_cfg', load_from=str(deploy_checkpoint))
    deploy_run.test()
    assert 'ReparamHook: nothing to fuse' in log_text(deploy_run)

    # The training config: the hook shapes the model to the checkpoint.
    train_run, train_probe = make_runner(
        tiny_seg_cfg, 'train_cfg', load_from=str(deploy_checkpoint))
    train_run.test()
    assert 'deploy checkpoint, model shaped to it' in log_text(train_run)
    for expected, actual in zip(deploy_probe.logits, train_probe.logits):
        assert torch.equal(expected, actual)


def test_deploy_checkpoint_refused_where_it_cannot_work(
        tiny_seg_cfg, deploy_checkpoint):
    # The hook stops any Runner (mmseg's own tools too) with our error,
    # which our tools print as one line.
    other = copy.deepcopy(tiny_seg_cfg)
    other.model.decode_head.channels = 16
    runner, probe = make_runner(
        other, 'mismatch', load_from=str(deploy_checkpoint))
    with pytest.raises(CheckpointError, match='does not match'):
        runner.test()
    assert probe.logits == []

    runner, _ = make_runner(
        tiny_seg_cfg, 'train_from_deploy', load_from=str(deploy_checkpoint))
    with pytest.raises(CheckpointError, match='cannot be trained from'):
        runner.train()


def test_train_time_checkpoint_refused_by_the_deploy_config(
        tiny_seg_cfg, tiny_seg_checkpoint, deploy_checkpoint):
    """mmengine would load it non-strictly and score random weights."""
    deploy_cfg = Config.fromfile(str(deploy_checkpoint.with_suffix('.py')))
    runner, probe = make_runner(
        deploy_cfg,
        'deploy_cfg_train_ckpt',
        load_from=str(tiny_seg_checkpoint))
    with pytest.raises(
            CheckpointError, match='train-time checkpoint.*reparam.py'):
        runner.test()
    assert probe.logits == []  # stopped before scoring anything
    # A train-time checkpoint of another model is refused at test alike.
    other = copy.deepcopy(tiny_seg_cfg)
    other.model.decode_head.channels = 16
    runner, _ = make_runner(
        other, 'other_arch', load_from=str(tiny_seg_checkpoint))
    with pytest.raises(CheckpointError, match='resized keys'):
        runner.test()


def test_hook_is_registered_and_off_switches_work(tiny_seg_cfg,
                                                  tiny_seg_checkpoint):
    hook = ReparamHook(fuse_before_test=False)
    runner, _ = make_runner(
        tiny_seg_cfg, 'off', load_from=str(tiny_seg_checkpoint))
    assert any(isinstance(h, ReparamHook) for h in runner.hooks)
    model = build_segmentor(tiny_seg_cfg)
    runner.model = model
    hook.before_test_epoch(runner)
    assert count_norms(model) > 0 and model.with_auxiliary_head


def test_ema_weights_are_validated_tested_and_shipped_fused(tiny_seg_cfg):
    """EMAHook beside ReparamHook: train, validate fused, ship, test."""
    hooks = [
        dict(type='EMAHook', momentum=0.5),
        dict(type='ReparamHook', validate_fused=True)
    ]
    runner, probe = make_runner(tiny_seg_cfg, 'ema', custom_hooks=hooks)
    runner.train()
    work_dir = Path(runner.work_dir)
    checkpoint = str(work_dir / 'iter_4.pth')
    # mmengine saves the EMA weights as the checkpoint's state_dict.
    saved = safe_torch_load(checkpoint)['state_dict']
    trained = runner.model.state_dict()
    assert any(not torch.equal(saved[k], trained[k]) for k in trained)
    ema_model, _ = load_segmentor(tiny_seg_cfg, checkpoint)
    inputs = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        expected = segmentor_logits(ema_model, inputs)
        # The last validation ran a fused copy of the EMA weights.
        val_model = probe.val_models[-1]
        assert count_norms(val_model) == 0
        assert relative_error(expected,
                              segmentor_logits(val_model.eval(),
                                               inputs))[1] < 1e-5
        # deploy_final holds them too, fused.
        deployed, _ = load_segmentor(
            Config.fromfile(str(work_dir / 'deploy_final.py')),
            str(work_dir / 'deploy_final.pth'))
        assert relative_error(expected, segmentor_logits(deployed,
                                                         inputs))[1] < 1e-5

    # tools/test.py's flow: a fresh Runner with EMAHook loads the checkpoint,
    # EMAHook swaps in, the model is fused and EMAHook swaps back.
    tester, test_probe = make_runner(
        tiny_seg_cfg,
        'ema_test',
        custom_hooks=hooks,
        load_from=SAFE_SCHEME + checkpoint)
    assert 'mIoU' in tester.test()
    (ema_hook, ) = [h for h in tester.hooks if isinstance(h, EMAHook)]
    assert count_norms(tester.model) == count_norms(
        ema_hook.ema_model.module) == 0
    with torch.no_grad():
        for batch, logits in zip(test_probe.batches, test_probe.logits):
            unfused = torch.stack(
                [o.seg_logits.data for o in ema_model.test_step(batch)])
            assert relative_error(unfused, logits)[1] < 1e-5


def test_deploy_checkpoints_are_verified_before_writing(
        tiny_seg_cfg, monkeypatch):

    def mismatch(*args, **kwargs):
        raise FusionMismatchError('injected: fused logits differ')

    monkeypatch.setattr(artifacts, 'check_fused_equal', mismatch)
    runner, _ = make_runner(tiny_seg_cfg, 'unverified')
    with pytest.raises(FusionMismatchError, match='injected'):
        runner.train()
    assert (Path(runner.work_dir) / 'iter_4.pth').is_file()
    assert not list(Path(runner.work_dir).glob('deploy_*'))


def test_fused_backbone_checkpoint_tests_with_the_training_config(
        tiny_seg_cfg, tiny_seg_checkpoint, tmp_path):
    """Not a deploy checkpoint, but its backbone is fused: shaped to it too.
    """
    model, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    reparameterize_model(model.backbone, inplace=True)
    path = tmp_path / 'fused_backbone.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    runner, probe = make_runner(
        tiny_seg_cfg, 'fused_backbone', load_from=str(path))
    runner.test()
    assert 'fused-backbone checkpoint, model shaped to it' in log_text(runner)
    with torch.no_grad():
        for batch, logits in zip(probe.batches, probe.logits):
            expected = torch.stack(
                [o.seg_logits.data for o in model.test_step(batch)])
            assert relative_error(expected, logits)[1] < 1e-5


def test_reparam_hook_is_its_small_hooks():
    hook = ReparamHook(validate_fused=True)
    assert [type(part) for part in hook.parts] == [
        CheckpointFitHook, FuseBeforeTestHook, FusedValHook, SaveDeployHook
    ]
    # The Runner's hook table lists exactly the stages the parts use.
    assert set(hook.get_triggered_stages()) == set().union(
        *(part.get_triggered_stages() for part in hook.parts))
    assert {
        'after_load_checkpoint', 'before_test_epoch', 'before_val_epoch',
        'after_train'
    } <= set(hook.get_triggered_stages())
    plain = ReparamHook(fuse_before_test=False, save_deploy=False)
    assert [type(part) for part in plain.parts] == [CheckpointFitHook]


def test_load_purpose_is_read_from_public_runner_state():
    built = OptimWrapper(torch.optim.SGD([torch.zeros(1)], lr=0.1))

    def runner(optim_wrapper, **cfg):
        return SimpleNamespace(optim_wrapper=optim_wrapper, cfg=Config(cfg))

    # Runner.test and Runner.val load before any optimizer is built.
    assert load_purpose(runner(dict(type='OptimWrapper'))) == 'test'
    assert load_purpose(runner(None, resume=True)) == 'test'
    assert load_purpose(runner(built, resume=True)) == 'resume'
    assert load_purpose(runner(built, resume=False)) == 'load_from'


def test_small_hooks_listed_on_their_own(tiny_seg_cfg, tiny_seg_checkpoint,
                                         deploy_checkpoint):
    """A config may list the small hooks instead of ReparamHook."""
    hooks = [
        dict(type='CheckpointFitHook'),
        dict(type='FuseBeforeTestHook'),
        dict(type='SaveDeployHook', verify_shape=(32, 64))
    ]
    trainer, _ = make_runner(tiny_seg_cfg, 'small_train', custom_hooks=hooks)
    trainer.train()
    assert (Path(trainer.work_dir) / 'deploy_final.pth').is_file()
    assert 'SaveDeployHook: deploy checkpoint' in log_text(trainer)
    tester, probe = make_runner(
        tiny_seg_cfg,
        'small_test',
        custom_hooks=hooks,
        load_from=str(deploy_checkpoint))
    tester.test()
    assert count_norms(tester.model) == 0 and len(probe.logits) == 4
    assert 'CheckpointFitHook: deploy checkpoint, model shaped' in log_text(
        tester)
    # The fit check alone refuses what does not fit.
    deploy_cfg = Config.fromfile(str(deploy_checkpoint.with_suffix('.py')))
    refused, probe = make_runner(
        deploy_cfg,
        'small_refused',
        custom_hooks=[dict(type='CheckpointFitHook')],
        load_from=str(tiny_seg_checkpoint))
    with pytest.raises(CheckpointError, match='train-time checkpoint'):
        refused.test()
    assert probe.logits == []
