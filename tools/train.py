"""Train a segmentor: mmseg's tools/train.py for the project's configs.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
    bash tools/dist_train.sh CONFIG GPUS [same options]
"""
import argparse
import sys

# First: registers RepVGG, the datasets, the hooks and the safe:// checkpoint
# loader scheme (which build_runner points load_from and --resume at).
import mmseg_repvgg  # noqa: F401  isort: skip
from mmseg_repvgg.cli import (add_common_args, build_runner, enable_amp,
                              enable_auto_scale_lr, load_config, run_cli,
                              set_local_rank, set_resume, set_work_dir)
from mmseg_repvgg.cli.args import ToolParser
from mmseg_repvgg.cli.checks import check_before_run


def parse_args(argv=None) -> argparse.Namespace:
    parser = ToolParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CKPT',
        help='resume from CKPT, or without CKPT from the latest checkpoint '
        'in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision training (needs a GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr linearly to the real global batch (GPUs x '
        'batch per GPU) from the config\'s auto_scale_lr.base_batch_size')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    set_local_rank(args.local_rank)
    cfg = load_config(args.config, args.cfg_options)
    set_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    set_resume(cfg, args.resume)
    check_before_run(cfg, 'train')
    runner = build_runner(cfg, args.launcher)
    runner.train()
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
