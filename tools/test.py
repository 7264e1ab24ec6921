"""Test (and evaluate) a segmentor: mmseg's tools/test.py for this project.

    python tools/test.py CONFIG CHECKPOINT [--deploy-form FORM] [...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

The ReparamHook fuses the model after the checkpoint loads, so the metrics
are the deployed model's; ``--deploy-form`` scores one deploy form with the
config's evaluator, ``--list-forms`` says which run here.
"""
import argparse
import sys

import torch

# First: registers RepVGG, the datasets, the hooks and the safe checkpoint
# loader into the registries (it patches nothing).
import mmseg_repvgg  # noqa: F401  isort: skip
from mmseg_repvgg.cli import (add_common_args, build_runner, check_checkpoint,
                              enable_tta, enable_visualization, load_config,
                              run_cli, set_local_rank, set_output_dir,
                              set_work_dir)
from mmseg_repvgg.cli.args import (ToolParser, add_calibration_args,
                                   add_forms_argument)
from mmseg_repvgg.cli.checks import check_before_run
from mmseg_repvgg.deploy.forms import (AUTO, available_forms, check_form,
                                       parse_form)
from mmseg_repvgg.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = ToolParser(description='MMSeg test (and eval) a model')
    parser.add_argument('config', nargs='?', help='test config file path')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file')
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
    add_forms_argument(
        parser,
        '--deploy-form',
        many=False,
        deploy=True,
        help='score this deploy form (e.g. fused, int8_lowres, winograd, '
        'onnxruntime, openvino_int8, auto); see --list-forms')
    add_calibration_args(
        parser, 'training images that calibrate the int8 forms (default '
        '%(default)s)',
        emulated='run a reduced precision the hardware only emulates (slow)')
    parser.add_argument(
        '--list-forms',
        action='store_true',
        help='print the deploy forms and which run on this machine, and '
        'exit')
    add_common_args(parser)
    return parser.parse_args(argv)


def print_forms() -> None:
    for name, reason in available_forms().items():
        print(f'{name:26s} {parse_form(name).label():40s} '
              f'{"runs here" if reason is None else "unavailable: " + reason}')
    print('Forms combine their parts with + (e.g. reduced+cl+lowres); see '
          'docs/deployment.md.')


def check_deploy_form(args) -> None:
    """Refuse, before any work, a form this machine cannot run."""
    if args.calibration_images < 1:
        raise ConfigError('--calibration-images must be at least 1')
    if args.tta:
        raise ConfigError('--deploy-form and --tta cannot be combined (TTA '
                          'runs the PyTorch model)')
    if args.deploy_form != AUTO:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        check_form(args.deploy_form, device, args.allow_emulated)


def add_deploy_form(cfg, args) -> None:
    """The test loop that scores the form with the config's evaluator."""
    cfg.test_cfg = dict(
        type='DeployFormTestLoop',
        forms=[args.deploy_form],
        calibration_images=args.calibration_images,
        allow_emulated=args.allow_emulated,
        fp16=(cfg.get('test_cfg') or {}).get('fp16', False))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_forms:
        print_forms()
        return 0
    if not args.config or not args.checkpoint:
        raise ConfigError('give CONFIG and CHECKPOINT (or --list-forms)')
    set_local_rank(args.local_rank)
    if args.deploy_form:
        check_deploy_form(args)
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
    if args.deploy_form:
        add_deploy_form(cfg, args)
    check_before_run(cfg, 'test')
    runner = build_runner(cfg, args.launcher)
    runner.test()
    if args.deploy_form == AUTO:
        chosen = runner.test_loop.deployed[0].form.name
        print(f'auto chose {chosen}; pin it with --deploy-form {chosen}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
