"""The configs: each loads and builds, and the paper's recipe is what they say.

Full-size models are built (weights not loaded) and run on a 64x128 input
in eval mode, which checks that every head takes the channels its backbone
gives; the drop-in examples also train one step shrunk to a tiny arch.
"""
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmseg_repvgg.checkpoint.download import (MMPRETRAIN_FILES,
                                              mmpretrain_name, resolve)
from mmseg_repvgg.errors import CheckpointError

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
REPVGG_PSPNET = {
    'pspnet_repvgg_b2_cityscapes.py': ('B2', None, 2560, 640),
    'pspnet_repvgg_b2_fast_cityscapes.py': ('B2', (0, 0, 4, 1), 2560, 640),
    'pspnet_repvgg_b1g2_cityscapes.py': ('B1g2', None, 2048, 512),
    'pspnet_repvgg_b1g2_fast_cityscapes.py': ('B1g2', (0, 0, 4, 1), 2048, 512),
}
DROP_IN = ('deeplabv3plus_repvgg_b1g2_cityscapes.py',
           'upernet_repvgg_b1g2_cityscapes.py',
           'fcn_repvgg_b1g2_cityscapes.py')
BASELINES = ('pspnet_r50-d8_paper_cityscapes.py',
             'pspnet_r101-d8_paper_cityscapes.py')
PAPER = (*REPVGG_PSPNET, *DROP_IN, *BASELINES)
TOY = 'pspnet_repvgg_toy_cityscapes.py'
CITYSCAPES_TRAIN_IMAGES = 2975
# A custom arch (a dict) replaces an arch name only with _delete_.
TINY_ARCH = dict(
    num_blocks=(1, 1, 2, 1), width_factor=(0.25, ) * 4, _delete_=True)


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIGS / name))


def build_model(cfg: Config):
    init_default_scope('mmseg')
    cfg.model.backbone.init_cfg = None
    cfg.model.pretrained = None
    return MODELS.build(cfg.model)


def test_every_config_is_listed():
    assert sorted(p.name for p in CONFIGS.glob('*.py')) == sorted(
        (*PAPER, TOY))


@pytest.mark.parametrize('name', [*PAPER, TOY])
def test_config_builds_and_runs_full_size(name):
    cfg = load(name)
    assert cfg.custom_imports.imports == ['mmseg_repvgg']
    assert not cfg.custom_imports.allow_failed_imports
    assert 'Checked' in cfg.train_dataloader.dataset.type
    assert 'Checked' in cfg.test_dataloader.dataset.type
    model = build_model(cfg).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 64, 128), mode='tensor')
    # Output stride 8 (UPerNet fuses its pyramid at stride 4).
    assert logits.shape[:2] == (1, 19)
    assert logits.shape[2:] in ((8, 16), (16, 32))


@pytest.mark.parametrize('name', REPVGG_PSPNET)
def test_pspnet_variants(name):
    arch, dilated_blocks, last, third = REPVGG_PSPNET[name]
    cfg = load(name)
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch) == ('RepVGG', arch)
    assert backbone.strides == (2, 2, 1, 1)
    assert backbone.dilations == (1, 1, 2, 4)
    assert backbone.dilated_blocks == dilated_blocks
    assert backbone.norm_cfg.type == 'SyncBN'
    assert backbone.init_cfg == dict(
        type='RepVGGPretrained', checkpoint=f'mmpretrain://repvgg-{arch}')
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert (cfg.model.decode_head.type, cfg.model.decode_head.in_index,
            cfg.model.decode_head.in_channels) == ('PSPHead', 3, last)
    assert (cfg.model.auxiliary_head.type, cfg.model.auxiliary_head.in_index,
            cfg.model.auxiliary_head.in_channels) == ('FCNHead', 2, third)
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert dict(type='ReparamHook', save_deploy=True) in cfg.custom_hooks


@pytest.mark.parametrize('name', [*REPVGG_PSPNET, *DROP_IN])
def test_repvgg_configs_fetch_the_weights_of_their_arch(name):
    """Resolved offline: the published file of the backbone's arch."""
    backbone = load(name).model.backbone
    assert backbone.init_cfg.checkpoint == mmpretrain_name(backbone.arch)
    remote = resolve(backbone.init_cfg.checkpoint)
    assert remote.filename == MMPRETRAIN_FILES[backbone.arch][0]
    assert remote.url.startswith('https://download.openmmlab.com/')
    assert remote.hash_prefix and remote.hash_prefix in remote.filename


def test_fast_variant_dilates_only_the_last_five_layers():
    cfg = load('pspnet_repvgg_b1g2_fast_cityscapes.py')
    init_default_scope('mmseg')
    # B1g2's blocks per stage at an eighth of its widths: the dilation
    # pattern depends on the blocks only.
    arch = dict(num_blocks=(4, 6, 16, 1), width_factor=(0.25, ) * 4)
    backbone = MODELS.build(dict(cfg.model.backbone, arch=arch, init_cfg=None))
    dilated = [
        f'{stage}.{i}' for stage in backbone.stage_names
        for i, block in enumerate(getattr(backbone, stage))
        if block.dilation > 1
    ]
    assert dilated == [f'stage3.{i}' for i in range(12, 16)] + ['stage4.0']


@pytest.mark.parametrize('name', PAPER)
def test_paper_schedule(name):
    cfg = load(name)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum,
            optimizer.weight_decay) == ('SGD', 0.01, 0.9, 1e-4)
    assert cfg.train_dataloader.batch_size * cfg.num_gpus == 16
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == 40
    (poly, ) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == \
        ('PolyLR', 0.9, 0.0, 0, 40)
    assert poly.by_epoch and poly.convert_to_iter_based
    checkpoint = cfg.default_hooks.checkpoint
    assert (checkpoint.save_best, checkpoint.rule) == ('mIoU', 'greater')
    assert checkpoint.interval == cfg.train_cfg.val_interval


def test_paper_schedule_decays_per_iteration_to_zero():
    cfg = load('pspnet_repvgg_b2_cityscapes.py')
    init_default_scope('mmseg')
    optim = build_optim_wrapper(torch.nn.Linear(1, 1), cfg.optim_wrapper)
    # 8 GPUs x 2: each rank's sampler takes ceil(2975 / 8) = 372 images,
    # 186 batches of 2, so 40 epochs are 7440 iterations.
    epoch_length = math.ceil(CITYSCAPES_TRAIN_IMAGES / 16)
    scheduler = PARAM_SCHEDULERS.build(
        dict(cfg.param_scheduler[0], epoch_length=epoch_length),
        default_args=dict(optimizer=optim))
    assert (scheduler.by_epoch, scheduler.end) == (False, 7440)
    lrs = []
    for _ in range(7440):
        lrs.append(optim.param_groups[0]['lr'])
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[3720] == pytest.approx(0.01 * 0.5**0.9, rel=1e-3)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert optim.param_groups[0]['lr'] == pytest.approx(0.0, abs=1e-12)


def tiny_overrides(name: str) -> dict:
    """``--cfg-options`` that shrink a B1g2 config to a CPU-sized model."""
    bn = dict(type='BN', requires_grad=True)
    options = {
        'model.backbone.arch': TINY_ARCH,
        'model.backbone.norm_cfg': bn,
        'model.backbone.init_cfg': None,
        'model.data_preprocessor.size': (32, 64),
        'model.decode_head.norm_cfg': bn,
        'model.decode_head.channels': 8,
        'model.auxiliary_head.norm_cfg': bn,
        'model.auxiliary_head.channels': 8,
        'model.auxiliary_head.in_channels': 64,
    }
    # Tiny widths: stem 16, stages 16, 32, 64, 128.
    if name.startswith('upernet'):
        options['model.decode_head.in_channels'] = [16, 32, 64, 128]
    else:
        options['model.decode_head.in_channels'] = 128
    if name.startswith('deeplabv3plus'):
        options['model.decode_head.c1_in_channels'] = 16
        options['model.decode_head.c1_channels'] = 8
    return options


@pytest.mark.parametrize('name', DROP_IN)
def test_drop_in_heads_train_a_step(name):
    cfg = load(name)
    cfg.merge_from_dict(tiny_overrides(name))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model).train()
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):  # PSP-style 1x1 pooling needs 2 images to train BN
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 19, (1, 32, 64), generator=gen))
        sample.set_metainfo(dict(img_shape=(32, 64), ori_shape=(32, 64)))
        samples.append(sample)
    data = model.data_preprocessor(
        dict(
            inputs=[
                torch.randint(0, 256, (3, 32, 64), dtype=torch.uint8)
                for _ in range(2)
            ],
            data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grad = model.backbone.stem.branch_3x3.conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_missing_pretrained_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    cfg = load('pspnet_repvgg_b2_cityscapes.py')
    local = 'checkpoints/RepVGG-B2-train.pth'
    cfg.merge_from_dict({
        'model.backbone.arch': TINY_ARCH,
        'model.backbone.init_cfg.checkpoint': local
    })
    init_default_scope('mmseg')
    backbone = MODELS.build(cfg.model.backbone)
    with pytest.raises(CheckpointError, match='RepVGG-B2-train.pth') as err:
        backbone.init_weights()
    # The conversion writes the path the config reads (the arch here is a
    # custom one, so the command leaves --arch to the user).
    assert ('convert_checkpoint.py SRC checkpoints/RepVGG-B2-train.pth '
            '--arch ARCH') in str(err.value)


def test_toy_config():
    cfg = load(TOY)
    text = (CONFIGS / TOY).read_text()
    assert "'./_base_/pspnet_repvgg_cityscapes.py'" in text  # inherits
    backbone = cfg.model.backbone
    assert backbone.type == 'RepVGG' and backbone.init_cfg is None
    for module in (backbone, cfg.model.decode_head, cfg.model.auxiliary_head):
        assert module.norm_cfg.type == 'BN'
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        assert loader.dataset.data_root.rstrip('/') == 'data/toy_cityscapes'
    assert cfg.model.decode_head.num_classes == 19
    assert dict(type='ReparamHook', save_deploy=True) in cfg.custom_hooks
    (poly, ) = cfg.param_scheduler
    assert poly.end == cfg.train_cfg.max_epochs
