"""The main job: a small PSPNet-RepVGG trained and tested on toy Cityscapes.

    python tools/demo.py [--work-dir DIR] [--epochs N] [--data-root DIR]

1. Writes the built-in toy Cityscapes (128x256 images, the 19 classes) to
   ``data/toy_cityscapes`` unless it is there.
2. Trains configs/pspnet_repvgg_toy_cityscapes.py from scratch on the CPU
   through ``tools/train.py``.
3. Tests the last checkpoint through ``tools/test.py``: the ReparamHook
   re-parameterizes the model first, so the scores are the fused model's.
   mmseg's visualizer saves a few images, ground truth beside prediction.
4. Prints per-class IoU, mIoU, the score of a constant prediction for
   comparison, and where the images are.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from glob import glob
from typing import Optional

import cv2
import numpy as np

from mmseg_repvgg.errors import DatasetError, run_cli

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/pspnet_repvgg_toy_cityscapes.py'
IGNORE_INDEX = 255
NUM_CLASSES = 19
# What the tools' logs show live (all of it goes to the log files):
# progress and the ReparamHook's report; problems always show.
SHOWN = ('Epoch(', 'ReparamHook:', 'Saving checkpoint', 'best checkpoint')
PROBLEMS = ('Error', 'error:', 'Traceback')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a small PSPNet-RepVGG on toy Cityscapes on the '
        'CPU, test it re-parameterized, and show the results.')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='checkpoints, logs and images go here (default: %(default)s)')
    parser.add_argument(
        '--epochs',
        type=int,
        help='training epochs over the 64 toy images, 16 iterations each; '
        'the lr decays to 0 over them (default: the config\'s)')
    parser.add_argument(
        '--data-root',
        default='data/toy_cityscapes',
        help='toy Cityscapes; written there if missing (default: '
        '%(default)s)')
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error('--epochs must be at least 1')
    return args


def ensure_toy_data(data_root: str) -> bool:
    """Write the toy Cityscapes unless it exists; True if written."""
    if osp.isdir(osp.join(data_root, 'gtFine', 'val')):
        return False
    # Imported here: it loads mmseg, which the other steps leave to the
    # subprocesses.
    from mmseg_repvgg.datasets import make_toy_cityscapes
    make_toy_cityscapes(data_root)
    return True


def config_options(data_root: str, epochs: Optional[int] = None) -> list:
    """``--cfg-options`` for the data root and the number of epochs."""
    options = []
    if epochs is not None:
        options += [
            f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}',
            # The poly decay ends with training, as in the config.
            f'param_scheduler.0.end={epochs}',
            f'default_hooks.checkpoint.interval={epochs}',
        ]
    for split in ('train', 'val', 'test'):
        options.append(f'{split}_dataloader.dataset.data_root={data_root}')
    return options


def worth_showing(line: str) -> bool:
    """Whether a log line is progress or a problem."""
    if any(key in line for key in PROBLEMS):
        return True
    return ' - mmengine - INFO - ' in line and any(key in line
                                                   for key in SHOWN)


def run_tool(argv: list, log_file: str) -> str:
    """Run a tool, showing the gist of its output live and saving it all.

    Args:
        argv (list): The tool's command line after the interpreter.
        log_file (str): Where the output is saved too.

    Returns:
        str: Everything the tool printed.

    Raises:
        SystemExit: The tool failed; exits with its status.
    """
    cmd = [sys.executable, *argv]
    print('$ ' + ' '.join(cmd), flush=True)
    lines = []
    with open(log_file, 'w') as log, subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1) as proc:
        for line in proc.stdout:
            if worth_showing(line):
                sys.stdout.write(line)
            log.write(line)
            lines.append(line)
    if proc.returncode:
        sys.stdout.write(''.join(lines[-20:]))
        print(
            f'demo: {argv[0]} failed (exit {proc.returncode}); its output '
            f'is in {log_file}',
            file=sys.stderr)
        raise SystemExit(proc.returncode)
    return ''.join(lines)


def last_checkpoint(work_dir: str) -> str:
    """The checkpoint mmengine's CheckpointHook saved last."""
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def test_metrics(test_dir: str) -> dict:
    """aAcc, mIoU and mAcc of the newest test run in ``test_dir``.

    mmengine's LoggerHook writes them to ``TIMESTAMP/TIMESTAMP.json``.
    """
    runs = sorted(glob(osp.join(test_dir, '*', '*.json')))
    with open(runs[-1]) as f:
        return json.load(f)


def last_val_miou(work_dir: str) -> Optional[float]:
    """mIoU of the last validation in training (the train-time model).

    mmengine's LocalVisBackend writes one JSON line per logged step to
    ``TIMESTAMP/vis_data/scalars.json``.
    """
    runs = sorted(glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not runs:
        return None
    with open(runs[-1]) as f:
        scores = [json.loads(line) for line in f if '"mIoU"' in line]
    return scores[-1]['mIoU'] if scores else None


def per_class_table(output: str) -> str:
    """The per-class IoU/Acc table mmseg's IoUMetric logged, as text."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if 'per class results' in line]
    if not starts:
        return ''
    table = []
    for line in lines[starts[-1] + 1:]:
        if line.startswith(('+', '|')):
            table.append(line)
        elif table:
            break
    return '\n'.join(table)


def constant_prediction_miou(data_root: str) -> float:
    """mIoU (%) of predicting the most frequent class everywhere.

    The reference for "learned something": that class scores its pixel
    share as IoU and every other class present scores 0 (IoUMetric skips
    classes absent from both ground truth and prediction).
    """
    files = glob(
        osp.join(data_root, 'gtFine', 'val', '**', '*labelTrainIds.png'),
        recursive=True)
    if not files:
        raise DatasetError(f'no *labelTrainIds.png under {data_root}/gtFine/'
                           'val; delete the folder so the demo rewrites it')
    counts = np.zeros(NUM_CLASSES, np.int64)
    for name in files:
        label = cv2.imread(name, cv2.IMREAD_UNCHANGED)
        counts += np.bincount(
            label[label != IGNORE_INDEX].ravel(),
            minlength=NUM_CLASSES)[:NUM_CLASSES]
    return 100.0 * counts.max() / counts.sum() / np.count_nonzero(counts)


def print_summary(output: str, work_dir: str, test_dir: str, show_dir: str,
                  data_root: str) -> None:
    """Per-class IoU, mIoU against a constant prediction, where things are.
    """
    metrics = test_metrics(test_dir)
    images = sorted(glob(osp.join(show_dir, 'vis_data', 'vis_image', '*')))
    print('\n[demo] results on the toy val images (re-parameterized model)')
    print(per_class_table(output))
    print(f'mIoU {metrics["mIoU"]:.2f} (aAcc {metrics["aAcc"]:.2f}, mAcc '
          f'{metrics["mAcc"]:.2f}); predicting the most frequent class '
          f'everywhere scores {constant_prediction_miou(data_root):.2f} mIoU')
    before = last_val_miou(work_dir)
    if before is not None:
        same = abs(before - metrics['mIoU']) < 0.01
        print(f'the train-time (unfused) model scored {before:.2f} mIoU at '
              'its last validation' +
              (': the fused model is the same function' if same else ''))
    print(
        f'fused (deploy) checkpoint: {osp.join(work_dir, "deploy_final.pth")}')
    if images:
        print(f'{len(images)} images, ground truth | prediction, in '
              f'{osp.abspath(osp.dirname(images[0]))}')


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)  # the config names data/ relative to the repository
    os.makedirs(args.work_dir, exist_ok=True)
    started = time.time()

    print(f'[demo] 1/3 toy Cityscapes in {args.data_root}', flush=True)
    if ensure_toy_data(args.data_root):
        print(f'[demo] wrote {args.data_root}')

    epochs = f'{args.epochs} epochs' if args.epochs else "the config's epochs"
    print(f'[demo] 2/3 training {CONFIG} for {epochs} on the CPU', flush=True)
    train_started = time.time()
    options = config_options(args.data_root, args.epochs)
    run_tool([
        'tools/train.py', CONFIG, '--work-dir', args.work_dir, '--cfg-options',
        *options
    ], osp.join(args.work_dir, 'demo_train.log'))
    train_seconds = time.time() - train_started
    checkpoint = last_checkpoint(args.work_dir)

    print(f'[demo] 3/3 testing {checkpoint}, re-parameterized', flush=True)
    test_dir = osp.join(args.work_dir, 'test')
    show_dir = osp.join(test_dir, 'show')
    output = run_tool([
        'tools/test.py', CONFIG, checkpoint, '--work-dir', test_dir,
        '--show-dir', show_dir, '--cfg-options', *options
    ], osp.join(args.work_dir, 'demo_test.log'))

    print_summary(output, args.work_dir, test_dir, show_dir, args.data_root)
    print(f'time: training {train_seconds:.0f} s, whole demo '
          f'{time.time() - started:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
