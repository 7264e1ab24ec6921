"""Test (and evaluate) a segmentor: mmseg's tools/test.py for this project.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR]
        [--out DIR] [--tta] [--cfg-options key=value ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

With the ReparamHook of the RepVGG configs the model is re-parameterized
(fused) after the checkpoint loads, so the metrics are the deployed
model's. A deploy checkpoint (``deploy_final.pth``) works too.
"""
import argparse
import sys

# First: registers RepVGG, the datasets and the ReparamHook, and applies the
# compatibility patches (safe checkpoint loading) before mmengine runs.
import mmseg_repvgg  # noqa: F401  isort: skip
from mmseg_repvgg.cli import (add_common_args, build_runner, check_checkpoint,
                              enable_tta, enable_visualization, load_config,
                              set_local_rank, set_output_dir, set_work_dir)
from mmseg_repvgg.config_checks import check_before_run
from mmseg_repvgg.errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='directory to save the predicted label maps (PNG) for offline '
        'evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where the painted images (ground truth beside '
        'prediction) are saved, under vis_data/vis_image/')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--tta', action='store_true', help='test time augmentation')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    set_local_rank(args.local_rank)
    check_checkpoint(args.checkpoint)
    cfg = load_config(args.config, args.cfg_options)
    set_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        enable_tta(cfg)
    if args.out is not None:
        set_output_dir(cfg, args.out)
    check_before_run(cfg, 'test')
    runner = build_runner(cfg, args.launcher)
    runner.test()
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
