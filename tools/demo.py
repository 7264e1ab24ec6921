"""The demo: a small PSPNet-RepVGG trained on toy Cityscapes (written
if missing) on the CPU, tested re-parameterized, per-class IoU printed.

    python tools/demo.py [--work-dir DIR] [--epochs N] [--data-root DIR]
"""
import argparse
import os
import os.path as osp
import sys
import time

# First: registers RepVGG, the datasets, the hooks and the safe checkpoint
# loader into the registries (it patches nothing).
import mmseg_repvgg  # noqa: F401  isort: skip
from demo_steps import format_report, run_demo  # beside this file

from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import ToolParser, add_cfg_options
from mmseg_repvgg.cli.outputs import check_output_dir

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    parser = ToolParser(
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
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error('--epochs must be at least 1')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)  # the config names data/ relative to the repository
    check_output_dir(args.work_dir, '--work-dir')
    check_output_dir(args.data_root, '--data-root')
    started = time.time()
    result = run_demo(
        args.work_dir,
        args.data_root,
        epochs=args.epochs,
        cfg_options=args.cfg_options,
        say=lambda text: print(text, flush=True))
    print('\n' + format_report(result))
    print(f'time: training {result.train_seconds:.0f} s, whole demo '
          f'{time.time() - started:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
