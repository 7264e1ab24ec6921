"""Deploy form of a segmentor: fusion, deploy config and checkpoint, tool.

Fixtures (tiny PSPNet-RepVGG config and checkpoint) are in conftest.py.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmcv.cnn import ConvModule
from mmengine.config import Config
from torch import nn

from mmseg_repvgg.checkpoint import build_segmentor, load_segmentor
from mmseg_repvgg.checkpoint.safe_load import safe_torch_load
from mmseg_repvgg.compare import relative_error
from mmseg_repvgg.deploy import artifacts as deploy
from mmseg_repvgg.deploy import (deploy_config, reparam_checkpoint,
                                 save_deploy_checkpoint)
from mmseg_repvgg.errors import CheckpointError, ConfigError
from mmseg_repvgg.models import (FusionMismatchError, RepVGGBlock,
                                 check_fused_equal, fuse_segmentor,
                                 segmentor_logits)
from mmseg_repvgg.models.reparam import is_batchnorm

REPO = Path(__file__).resolve().parents[2]
TRAIN_BRANCHES = ('branch_3x3', 'branch_1x1', 'branch_identity')


def load_tool(name):
    """Import ``tools/<name>.py`` (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_deploy_form(model):
    """No BatchNorm, no train-time branch, no auxiliary head anywhere."""
    for name, module in model.named_modules():
        assert not is_batchnorm(module), name
        assert not isinstance(module, nn.modules.batchnorm._BatchNorm), name
        assert name.rsplit('.', 1)[-1] not in TRAIN_BRANCHES, name
        if isinstance(module, RepVGGBlock):
            assert module.deploy, name
    assert getattr(model, 'auxiliary_head', None) is None


@torch.no_grad()
def test_fuse_segmentor_is_exact_and_leaves_no_bn(tiny_seg_cfg,
                                                  tiny_seg_checkpoint):
    model, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    fused, report = fuse_segmentor(model)

    assert_deploy_form(fused)
    assert len(report.blocks) == 6  # stem + (1, 1, 2, 1)
    assert 'decode_head.bottleneck' in report.conv_bn
    assert len(report.conv_bn) == 5  # 4 PPM convs + bottleneck
    assert report.dropped == ['auxiliary_head'] and not report.unfused_norms
    # inplace=False: the training model keeps its form.
    assert model.with_auxiliary_head and not model.backbone.stem.deploy
    inputs = torch.randn(2, 3, 32, 64)
    expected = segmentor_logits(model, inputs)
    assert expected.shape == (2, 3, 32, 64)
    assert relative_error(expected, segmentor_logits(fused, inputs))[1] < 1e-5
    # The export helper computes what mmseg's predict path computes.
    metas = [dict(img_shape=(32, 64), pad_shape=(32, 64))] * 2
    assert torch.allclose(expected, model.encode_decode(inputs, metas))


def test_fusing_a_fused_model_is_a_reported_noop(tiny_seg_cfg,
                                                 tiny_seg_checkpoint):
    model, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    fused, _ = fuse_segmentor(model)
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    again, report = fuse_segmentor(fused, inplace=True)
    assert again is fused and not report.changed
    assert 'nothing to fuse' in report.summary()
    after = fused.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@torch.no_grad()
def test_only_conv_then_bn_is_folded():
    """mmcv's fuse_conv_bn would fold a norm-first ConvModule wrongly."""
    model = nn.Sequential(
        ConvModule(4, 4, 3, padding=1, norm_cfg=dict(type='BN')),
        ConvModule(
            4,
            4,
            3,
            padding=1,
            norm_cfg=dict(type='BN'),
            order=('norm', 'conv', 'act'))).eval()
    for bn in (model[0].bn, model[1].bn):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    inputs = torch.randn(1, 4, 8, 8)
    fused, report = fuse_segmentor(model)
    assert report.conv_bn == ['0'] and report.unfused_norms == ['1.bn']
    assert relative_error(model(inputs), fused(inputs))[1] < 1e-5
    with pytest.raises(ConfigError, match='not in deploy form'):
        save_deploy_checkpoint(fused, None, 'never.pth',
                               deploy.deploy_meta(report, 'x'))


def test_deploy_config(tiny_seg_cfg):
    cfg = deploy_config(tiny_seg_cfg)
    assert cfg.model.backbone.deploy is True
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.decode_head.norm_cfg is None
    assert 'auxiliary_head' not in cfg.model
    # The training config is left as it was.
    assert tiny_seg_cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert 'auxiliary_head' in tiny_seg_cfg.model
    tiny_seg_cfg.model.backbone = dict(type='ResNetV1c', depth=50)
    with pytest.raises(ConfigError, match='no deploy form'):
        deploy_config(tiny_seg_cfg)


@torch.no_grad()
def test_deploy_checkpoint_loads_strictly(tiny_seg_cfg, tiny_seg_checkpoint,
                                          tmp_path):
    reference, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    out = tmp_path / 'out' / 'deploy.pth'
    result = reparam_checkpoint(
        tiny_seg_cfg, str(tiny_seg_checkpoint), str(out), shape=(1, 3, 32, 64))
    assert result.rel < 1e-5 and result.config == str(out.with_suffix('.py'))
    assert sorted(os.listdir(out.parent)) == ['deploy.pth', 'deploy.py']

    checkpoint = safe_torch_load(str(out))  # tensors and plain types only
    assert set(checkpoint) == {'meta', 'state_dict'}  # no optimizer state
    reparam = checkpoint['meta']['reparam']
    assert reparam['source'] == str(tiny_seg_checkpoint)
    assert len(reparam['fused_blocks']) == 6
    assert reparam['dropped'] == ['auxiliary_head']
    assert checkpoint['meta']['dataset_meta']['classes'][0] == 'road'

    # The config written beside OUT builds exactly the deploy model.
    deploy_model = build_segmentor(Config.fromfile(result.config)).eval()
    deploy_model.load_state_dict(checkpoint['state_dict'], strict=True)
    assert_deploy_form(deploy_model)
    # So does the training config with backbone.deploy=True.
    tiny_seg_cfg.merge_from_dict({'model.backbone.deploy': True})
    from_train_cfg, _ = load_segmentor(tiny_seg_cfg, str(out))
    inputs = torch.randn(1, 3, 32, 64)
    expected = segmentor_logits(reference, inputs)
    for model in (deploy_model, from_train_cfg):
        assert relative_error(expected, segmentor_logits(model,
                                                         inputs))[1] < 1e-5


def test_reparam_refuses_a_deploy_checkpoint(tiny_seg_cfg, tiny_seg_checkpoint,
                                             tmp_path):
    first = tmp_path / 'deploy.pth'
    reparam_checkpoint(
        tiny_seg_cfg,
        str(tiny_seg_checkpoint),
        str(first),
        shape=(1, 3, 32, 64))
    second = tmp_path / 'twice.pth'
    with pytest.raises(CheckpointError, match='already a deploy checkpoint'):
        reparam_checkpoint(tiny_seg_cfg, str(first), str(second))
    assert not second.exists()


def test_reparam_writes_nothing_when_fused_logits_differ(
        tiny_seg_cfg, tiny_seg_checkpoint, tmp_path, monkeypatch):
    real_fuse = deploy.fuse_segmentor

    def broken_fuse(model, inplace=False):
        fused, report = real_fuse(model, inplace)
        with torch.no_grad():
            fused.decode_head.conv_seg.bias.add_(1.0)
        return fused, report

    monkeypatch.setattr(deploy, 'fuse_segmentor', broken_fuse)
    out = tmp_path / 'deploy.pth'
    with pytest.raises(FusionMismatchError, match='differ'):
        reparam_checkpoint(
            tiny_seg_cfg,
            str(tiny_seg_checkpoint),
            str(out),
            shape=(1, 3, 32, 64))
    assert sorted(
        os.listdir(tmp_path)) == ['tiny_pspnet_repvgg.py', 'tiny_train.pth']
    model, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    with pytest.raises(FusionMismatchError):
        check_fused_equal(model, broken_fuse(model)[0], (1, 3, 32, 64))


def test_reparam_tool(tiny_seg_checkpoint, tmp_path, capsys):
    config = str(tmp_path / 'tiny_pspnet_repvgg.py')
    out = tmp_path / 'deploy.pth'
    load_tool('reparam').main(
        [config,
         str(tiny_seg_checkpoint),
         str(out), '--shape', '32', '64'])
    printed = capsys.readouterr().out
    assert 'max abs difference of the logits' in printed
    assert out.is_file() and out.with_suffix('.py').is_file()

    # The real entry point: an already fused checkpoint is a one-line error.
    proc = subprocess.run([
        sys.executable, 'tools/reparam.py', config,
        str(out),
        str(tmp_path / 'again.pth')
    ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error')]
    assert len(errors) == 1 and 'already a deploy checkpoint' in errors[0]
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'again.pth').exists()
