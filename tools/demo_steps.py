"""The steps of tools/demo.py, in-process: train and test as tools/train.py
and tools/test.py do, then report ``runner.test()``'s per-class scores."""
import contextlib
import io
import os.path as osp
import sys
import time
from dataclasses import dataclass, field
from glob import glob
from typing import List, Optional, Sequence, TextIO, Tuple

import cv2
import numpy as np
from mmengine.runner import Runner

from mmseg_repvgg.cli import (build_runner, check_checkpoint,
                              enable_visualization, load_config, set_work_dir)
from mmseg_repvgg.cli.checks import check_before_run
from mmseg_repvgg.errors import ConfigError, DatasetError

#: The demo's config, relative to the repository.
CONFIG = 'configs/pspnet_repvgg_toy_cityscapes.py'
# Log lines shown live (the log files keep everything); problems always.
SHOWN = ('Epoch(', 'ReparamHook:', 'Saving checkpoint', 'best checkpoint')
PROBLEMS = ('ERROR', 'Error', 'error:', 'Traceback')


def config_options(data_root: str, epochs: Optional[int] = None) -> dict:
    """``--cfg-options`` of the demo's config for the data root and the
    epochs (the poly decay, validation and checkpoint follow them)."""
    options = {}
    if epochs is not None:
        options.update({
            'train_cfg.max_epochs': epochs,
            'train_cfg.val_interval': epochs,
            # The poly decay ends with training, as in the config.
            'param_scheduler.0.end': epochs,
            'default_hooks.checkpoint.interval': epochs,
        })
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = data_root
    return options


class LiveGist(io.TextIOBase):
    """A stdout passing on only progress and problems to ``stream`` (a
    Runner's logger writes to the ``sys.stdout`` it is built with)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._partial = ''

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split('\n')
        for line in lines:
            shown = ' - mmengine - ' in line and any(k in line for k in SHOWN)
            if shown or any(key in line for key in PROBLEMS):
                self.stream.write(line + '\n')
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:  # mmengine colours its levels on a terminal
        return self.stream.isatty()


def _run(cfg, mode: str, live: bool) -> Tuple[Runner, dict]:
    """Check and build the Runner as the tools do, then train or test."""
    # This Runner's logger, message hub and visualizer its own: mmengine
    # shares them by name, and mmseg's runtime base names the visualizer
    # 'visualizer' (a second Runner would draw into the first's).
    cfg.experiment_name = f'demo_{mode}'
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.pop('name', None)
    check_before_run(cfg, mode)
    console = (
        contextlib.redirect_stdout(LiveGist(sys.stdout))
        if live else contextlib.nullcontext())
    with console:
        runner = build_runner(cfg, 'none')
        return runner, runner.train() if mode == 'train' else runner.test()


def run_training(config: str,
                 work_dir: str,
                 options: dict,
                 live: bool = True) -> Runner:
    """Train as ``tools/train.py CONFIG --work-dir DIR --cfg-options ...``;
    the finished Runner's message hub holds the last checkpoint and scores
    (``live``: only the gist of the log on the console)."""
    cfg = load_config(config, options)
    set_work_dir(cfg, work_dir, config)
    return _run(cfg, 'train', live)[0]


def run_test(config: str,
             checkpoint: str,
             work_dir: str,
             show_dir: str,
             options: dict,
             live: bool = True) -> Tuple[dict, Runner]:
    """Test as ``tools/test.py CONFIG CKPT --work-dir DIR --show-dir DIR``,
    fused by the config's ReparamHook, scored by ``PerClassIoUMetric``;
    returns what ``runner.test()`` returned, and the Runner."""
    check_checkpoint(checkpoint)
    cfg = load_config(config, options)
    set_work_dir(cfg, work_dir, config)
    cfg.load_from = checkpoint
    enable_visualization(cfg, False, show_dir, 0)
    evaluator = cfg.get('test_evaluator')
    if not isinstance(evaluator, dict) or evaluator.get('type') != 'IoUMetric':
        raise ConfigError(
            f'the demo reports per-class IoU from an IoUMetric test '
            f'evaluator; {config} has {evaluator}')
    cfg.test_evaluator = dict(evaluator, type='PerClassIoUMetric')
    runner, metrics = _run(cfg, 'test', live)
    return metrics, runner


def constant_prediction_miou(label_files: Sequence[str],
                             num_classes: int,
                             ignore_index: int = 255) -> float:
    """mIoU (%) of predicting the most frequent class everywhere, the
    reference for "learned something": that class scores its pixel share,
    every other class present 0; DatasetError without a labelled pixel."""
    counts = np.zeros(num_classes, np.int64)
    for name in label_files:
        label = cv2.imread(name, cv2.IMREAD_UNCHANGED)
        if label is None:
            raise DatasetError(f'{name}: not a readable label map')
        counts += np.bincount(
            label[label != ignore_index].ravel(),
            minlength=num_classes)[:num_classes]
    if not counts.sum():
        raise DatasetError('no labelled pixels in the test labels; delete '
                           'the data folder so the demo rewrites it')
    return 100.0 * counts.max() / counts.sum() / np.count_nonzero(counts)


@dataclass
class DemoResult:
    """What a demo run produced."""

    metrics: dict  # runner.test()'s, per-class scores too
    classes: tuple  # the test dataset's
    baseline_miou: float  # constant_prediction_miou's
    train_miou: Optional[float]  # the last validation's (unfused)
    checkpoint: str  # the tested (last) training checkpoint
    work_dir: str  # the training's (deploy_final.pth)
    images: List[str] = field(default_factory=list)  # ground truth | pred
    log_dirs: Tuple[str, ...] = ()  # the training and the test Runner's
    train_seconds: float = 0.0


def run_demo(work_dir: str,
             data_root: str,
             epochs: Optional[int] = None,
             config: str = CONFIG,
             cfg_options: Optional[dict] = None,
             live: bool = True,
             say=print) -> DemoResult:
    """Write the toy data if missing, train into ``work_dir``, test fused
    into ``work_dir/test``; ``cfg_options`` apply after the data root and
    ``epochs`` (None: the config's), ``say`` prints the step headers."""
    say(f'[demo] 1/3 toy Cityscapes in {data_root}')
    if not osp.isdir(osp.join(data_root, 'gtFine', 'val')):
        from mmseg_repvgg.datasets import make_toy_cityscapes
        make_toy_cityscapes(data_root)
        say(f'[demo] wrote {data_root}')
    options = dict(config_options(data_root, epochs), **(cfg_options or {}))

    how_long = f'{epochs} epochs' if epochs else "the config's epochs"
    say(f'[demo] 2/3 training {config} for {how_long} on the CPU')
    started = time.time()
    trainer = run_training(config, work_dir, options, live)
    train_seconds = time.time() - started
    checkpoint = trainer.message_hub.get_info('last_ckpt')
    if not checkpoint:
        raise ConfigError(
            'training saved no checkpoint to test; set '
            'default_hooks.checkpoint.interval to at most the epochs')
    val_miou = trainer.message_hub.log_scalars.get('val/mIoU')

    say(f'[demo] 3/3 testing {checkpoint}, re-parameterized')
    test_dir = osp.join(work_dir, 'test')
    show_dir = osp.join(test_dir, 'show')
    metrics, tester = run_test(config, checkpoint, test_dir, show_dir, options,
                               live)
    dataset = tester.test_dataloader.dataset
    classes = tuple(dataset.metainfo['classes'])
    labels = [
        dataset.get_data_info(i)['seg_map_path'] for i in range(len(dataset))
    ]
    return DemoResult(
        metrics=dict(metrics),
        classes=classes,
        baseline_miou=constant_prediction_miou(labels, len(classes),
                                               dataset.ignore_index),
        train_miou=None if val_miou is None else float(val_miou.current()),
        checkpoint=checkpoint,
        work_dir=work_dir,
        images=sorted(glob(osp.join(show_dir, 'vis_data', 'vis_image', '*'))),
        log_dirs=(trainer.log_dir, tester.log_dir),
        train_seconds=train_seconds)


def format_report(result: DemoResult) -> str:
    """The demo's summary: per-class IoU and Acc (KeyError for a class
    without scores), mIoU against the baseline, paths."""
    metrics = result.metrics
    width = max(len('class'), *map(len, result.classes))
    lines = [
        '[demo] results on the toy val images (re-parameterized model)',
        f'{"class":<{width}}    IoU    Acc'
    ]
    lines += [
        f'{name:<{width}} {metrics[f"IoU.{name}"]:6.2f} '
        f'{metrics[f"Acc.{name}"]:6.2f}' for name in result.classes
    ]
    lines.append(f'mIoU {metrics["mIoU"]:.2f} (aAcc {metrics["aAcc"]:.2f}, '
                 f'mAcc {metrics["mAcc"]:.2f}); predicting the most frequent '
                 f'class everywhere scores {result.baseline_miou:.2f} mIoU')
    if result.train_miou is not None:
        same = abs(result.train_miou - metrics['mIoU']) < 0.01
        lines.append(
            f'the train-time (unfused) model scored {result.train_miou:.2f} '
            'mIoU at its last validation' +
            (': the fused model is the same function' if same else ''))
    lines.append('fused (deploy) checkpoint: '
                 f'{osp.join(result.work_dir, "deploy_final.pth")}')
    if result.images:
        lines.append(f'{len(result.images)} images, ground truth | '
                     'prediction, in '
                     f'{osp.abspath(osp.dirname(result.images[0]))}')
    if result.log_dirs:
        lines.append('logs: ' + ', '.join(result.log_dirs))
    return '\n'.join(lines)
