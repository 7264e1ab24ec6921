"""Shared test fixtures.

Each section belongs to the tests named in its header; add sections, don't
rewrite others'.
"""
import logging

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from torch.nn.modules.batchnorm import _BatchNorm

import mmseg_repvgg  # noqa: F401  (registers the backbone and the hook)

# --- General ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def mmseg_default_scope():
    """Build from mmseg's registries in every test, as mmseg's tools do.

    A Runner made by an earlier test may leave another default scope
    behind (mmengine's), under which ``type='RepVGG'`` is not found.
    """
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


# --- Deploy: test_deploy.py, test_reparam_hook.py, test_export_onnx.py ----
# A tiny PSPNet-RepVGG (PSPHead + FCNHead auxiliary head, SyncBN as in the
# real configs) and a tiny Cityscapes-like dataset of 32x64 PNGs.

TINY_CLASSES = ('road', 'car', 'sky')
TINY_PALETTE = [[128, 64, 128], [0, 0, 142], [70, 130, 180]]
TINY_HW = (32, 64)


def _tiny_model_cfg() -> dict:
    norm_cfg = dict(type='SyncBN', requires_grad=True)
    head = dict(
        num_classes=len(TINY_CLASSES),
        channels=8,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=False)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=TINY_HW),
        backbone=dict(
            type='RepVGG',
            arch=dict(num_blocks=(1, 1, 2, 1), width_factor=(0.25, ) * 4),
            strides=(2, 2, 1, 1),
            dilations=(1, 1, 2, 4),
            norm_cfg=norm_cfg),
        decode_head=dict(
            type='PSPHead',
            in_channels=128,
            in_index=3,
            pool_scales=(1, 2, 3, 6),
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0),
            **head),
        auxiliary_head=dict(
            type='FCNHead',
            in_channels=64,
            in_index=2,
            num_convs=1,
            concat_input=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4),
            **head),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def _tiny_loader(data_root: str, train: bool) -> dict:
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')
    ]
    return dict(
        batch_size=2 if train else 1,  # PSP's 1x1 pool needs 2 to train BN
        num_workers=0,
        sampler=dict(
            type='InfiniteSampler' if train else 'DefaultSampler',
            shuffle=train),
        dataset=dict(
            type='BaseSegDataset',
            data_root=data_root,
            data_prefix=dict(img_path='img', seg_map_path='ann'),
            img_suffix='.png',
            seg_map_suffix='.png',
            metainfo=dict(classes=TINY_CLASSES, palette=TINY_PALETTE),
            pipeline=pipeline))


def _tiny_runner_cfg(data_root: str, work_dir: str) -> dict:
    evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
    return dict(
        custom_imports=dict(
            imports=['mmseg_repvgg'], allow_failed_imports=False),
        default_scope='mmseg',
        work_dir=work_dir,
        model=_tiny_model_cfg(),
        train_dataloader=_tiny_loader(data_root, True),
        val_dataloader=_tiny_loader(data_root, False),
        test_dataloader=_tiny_loader(data_root, False),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=4, val_interval=2),
        val_cfg=dict(type='ValLoop'),
        test_cfg=dict(type='TestLoop'),
        val_evaluator=evaluator,
        test_evaluator=evaluator,
        optim_wrapper=dict(
            type='OptimWrapper',
            optimizer=dict(
                type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=[
            dict(type='PolyLR', power=0.9, begin=0, end=4, by_epoch=False)
        ],
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=1),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(
                type='CheckpointHook',
                by_epoch=False,
                interval=4,
                save_best='mIoU'),
            sampler_seed=dict(type='DistSamplerSeedHook')),
        custom_hooks=[dict(type='ReparamHook')],
        env_cfg=dict(
            cudnn_benchmark=False,
            mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
            dist_cfg=dict(backend='gloo')),
        log_processor=dict(by_epoch=False),
        log_level='INFO',
        randomness=dict(seed=0),
        load_from=None,
        resume=False)


def _write_tiny_dataset(root, count=4, seed=0) -> None:
    rng = np.random.default_rng(seed)
    (root / 'img').mkdir(parents=True)
    (root / 'ann').mkdir()
    for i in range(count):
        image = rng.integers(0, 256, (*TINY_HW, 3), dtype=np.uint8)
        label = rng.integers(0, len(TINY_CLASSES), TINY_HW, dtype=np.uint8)
        label[:2] = 255  # an ignored band, as Cityscapes has
        cv2.imwrite(str(root / 'img' / f'{i}.png'), image)
        cv2.imwrite(str(root / 'ann' / f'{i}.png'), label)


def randomize_bn_stats(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so folding matters.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
    return model


@pytest.fixture(scope='session')
def tiny_seg_data(tmp_path_factory):
    """Root of a tiny dataset: ``img/*.png`` and ``ann/*.png``."""
    root = tmp_path_factory.mktemp('tiny_seg_data')
    _write_tiny_dataset(root)
    return root


@pytest.fixture
def tiny_seg_cfg(tmp_path, tiny_seg_data):
    """A runner-ready Config of the tiny PSPNet-RepVGG, saved as a file.

    ``cfg.filename`` is ``tmp_path / 'tiny_pspnet_repvgg.py'``; training
    writes into ``tmp_path / 'work'``.
    """
    cfg = Config(_tiny_runner_cfg(str(tiny_seg_data), str(tmp_path / 'work')))
    path = tmp_path / 'tiny_pspnet_repvgg.py'
    cfg.dump(str(path))
    return Config.fromfile(str(path))


@pytest.fixture
def tiny_seg_checkpoint(tmp_path, tiny_seg_cfg):
    """A train-time checkpoint of the tiny model with random BN statistics.
    """
    from mmseg_repvgg.checkpoint import build_segmentor
    torch.manual_seed(0)
    model = randomize_bn_stats(build_segmentor(tiny_seg_cfg))
    path = tmp_path / 'tiny_train.pth'
    meta = dict(
        dataset_meta=dict(classes=TINY_CLASSES, palette=TINY_PALETTE), iter=4)
    torch.save(dict(meta=meta, state_dict=model.state_dict()), path)
    return path


@pytest.fixture
def tiny_model(tiny_seg_cfg):
    """The tiny PSPNet-RepVGG in eval mode, its BN statistics those of a
    random batch (activations at a trained network's scale)."""
    from mmseg_repvgg.checkpoint import build_segmentor
    from mmseg_repvgg.models import segmentor_logits
    torch.manual_seed(0)
    model = build_segmentor(tiny_seg_cfg)
    with torch.no_grad():
        model.train()
        segmentor_logits(model, torch.randn(2, 3, *TINY_HW))
    return model.eval()


# --- Tools: test_train_test_tools.py, test_dist.py -------------------------
# configs/pspnet_repvgg_toy_cityscapes.py shrunk through --cfg-options, as a
# user would, to a tiny model on 32x64 toy Cityscapes images.


@pytest.fixture(scope='session')
def toy_cityscapes_tiny(tmp_path_factory):
    """Toy Cityscapes of 4 train and 2 val images of 32x64."""
    from mmseg_repvgg.datasets import make_toy_cityscapes
    root = tmp_path_factory.mktemp('toy_cityscapes_tiny')
    make_toy_cityscapes(
        str(root), num_train=4, num_val=2, size=(32, 64), seed=0)
    return root


@pytest.fixture
def tiny_toy_options(toy_cityscapes_tiny):
    """``--cfg-options`` for 1 epoch (2 iterations of 2 images), tiny model.

    The pipeline indices are the toy config's RandomResize (2) and
    RandomCrop (3) for training and Resize (1) for testing.
    """
    options = [
        'model.backbone.arch.num_blocks=[1,1,1,1]',
        'model.backbone.arch.width_factor=[0.25,0.25,0.25,0.25]',
        'model.decode_head.in_channels=128',
        'model.decode_head.channels=8',
        'model.auxiliary_head.in_channels=64',
        'model.auxiliary_head.channels=8',
        'model.data_preprocessor.size=(32,64)',
        'train_dataloader.dataset.pipeline.2.scale=(64,32)',
        'train_dataloader.dataset.pipeline.3.crop_size=(32,64)',
        'train_dataloader.batch_size=2',
        'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1',
        'param_scheduler.0.end=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
        'default_hooks.visualization.interval=1',
    ]
    for split in ('train', 'val', 'test'):
        options += [
            f'{split}_dataloader.dataset.data_root={toy_cityscapes_tiny}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
        ]
    for split in ('val', 'test'):
        options.append(f'{split}_dataloader.dataset.pipeline.1.scale=(64,32)')
    return options


# --- Reliability: test_untrusted_checkpoints.py, test_tool_errors.py -------
# Every tool's main() run in-process, as ``python tools/NAME.py ARGS`` would
# run it (run_cli: a UserError becomes one stderr line and exit 2).


def _forget_loggers() -> None:
    """Start without MMLoggers, as a tool in a fresh process does.

    A Runner's logger is named after the config and the second it starts,
    so a Runner of the same config within the same second gets an earlier
    test's logger back, whose console handler writes to that test's
    closed capture ("--- Logging error ---" on stderr).
    """
    for logger in MMLogger._instance_dict.values():
        for handler in logger.handlers:
            handler.close()
    MMLogger._instance_dict.clear()


@pytest.fixture
def run_tool(capsys, monkeypatch):
    """``run_tool(name, *args) -> (exit code, stderr)`` of tools/NAME.py,
    with tools/ on ``sys.path`` as when the script runs; ``run_tool.out``
    is the last run's stdout."""
    import importlib.util
    import pathlib

    from mmseg_repvgg.cli import run_cli
    tools = pathlib.Path(__file__).resolve().parents[1] / 'tools'
    monkeypatch.syspath_prepend(str(tools))

    def run(name, *args):
        spec = importlib.util.spec_from_file_location(f'tool_{name}',
                                                      tools / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _forget_loggers()
        capsys.readouterr()
        try:
            code = run_cli(module.main, [str(a) for a in args])
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
        captured = capsys.readouterr()
        run.out = captured.out
        return code, captured.err

    return run


# --- Winograd: test_winograd.py, test_nnpack.py ----------------------------


@pytest.fixture
def log_lines():
    """Messages logged through mmengine's current logger during the test.
    """
    messages = []

    class Collect(logging.Handler):

        def emit(self, record):
            messages.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Collect(level=logging.DEBUG)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


# --- Kernels: every test, the on-disk caches -------------------------------


@pytest.fixture(autouse=True)
def measurement_cache(tmp_path_factory, monkeypatch, request):
    """The on-disk caches (Winograd's choices, auto's ranking) of each test
    in a folder of its own, never the home dir: a choice cached by one test
    must not spare another its measurement. The folder is made on first
    write."""
    folder = tmp_path_factory.getbasetemp() / 'cache' / str(
        abs(hash(request.node.nodeid)))
    monkeypatch.setenv('MMSEG_REPVGG_CACHE', str(folder))
    return folder


# --- CUDA: every test marked ``cuda`` --------------------------------------
# Skipped here, in one place, with the reason where torch sees no CUDA
# device; ``pytest -m cuda`` runs only them (tools/gpu_check.sh does).

NO_CUDA = 'needs a CUDA device: torch.cuda.is_available() is False'


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if item.get_closest_marker('cuda') is not None:
            item.add_marker(skip)


@pytest.fixture
def true_fp32():
    """fp32 references on CUDA without TF32, which cuDNN uses for fp32
    convs by default and which rounds about as coarsely as fp16."""
    # Set and restored by hand: monkeypatch cannot restore cuBLAS's flag.
    before = (torch.backends.cudnn.allow_tf32,
              torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    (torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = before
