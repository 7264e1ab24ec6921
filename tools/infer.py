"""Segment images, folders of images and videos with a trained segmentor.

    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...] --out-dir DIR

Writes ``DIR/STEM.png`` (label map), ``DIR/vis/STEM.png`` (overlay) per
image and ``DIR/vis/STEM.mp4`` per video; a bad input gets one line and the
others go on (exit 1). See docs/deployment.md.
"""
import argparse
import sys

# First: registers RepVGG, the datasets, the hooks and the safe checkpoint
# loader into the registries (it patches nothing).
import mmseg_repvgg  # noqa: F401  isort: skip

from mmseg_repvgg.apis import DeployInferencer, collect_sources
from mmseg_repvgg.cli import check_checkpoint, load_config, run_cli
from mmseg_repvgg.cli.args import (ToolParser, add_calibration_args,
                                   add_cfg_options, add_forms_argument)
from mmseg_repvgg.cli.outputs import check_output_dir


def parse_args(argv=None) -> argparse.Namespace:
    parser = ToolParser(
        description='Segment images, folders of images and videos; write '
        'label maps and overlay pictures')
    parser.add_argument('config', help='config file (or mmseg::path)')
    parser.add_argument('checkpoint', help='train-time or deploy checkpoint')
    parser.add_argument(
        'inputs',
        nargs='+',
        metavar='INPUT',
        help='image files, folders of images (searched recursively) or '
        'videos (.mp4 .avi .mov .mkv)')
    parser.add_argument(
        '--out-dir',
        required=True,
        help='where DIR/STEM.png (label maps) and DIR/vis/ (overlays) go')
    add_forms_argument(
        parser,
        '--deploy-form',
        'fused',
        many=False,
        deploy=True,
        help='deploy form to run (default: %(default)s, the fused fp32 '
        'model; auto: the fastest that runs here); see tools/test.py '
        '--list-forms')
    add_calibration_args(
        parser, 'training images that calibrate the int8 forms (default: '
        '%(default)s; used by the int8 forms and auto only, 0 keeps auto '
        'to the float forms)')
    parser.add_argument(
        '--label-ids',
        action='store_true',
        help='write Cityscapes label IDs instead of train IDs (the test '
        'server\'s format)')
    parser.add_argument(
        '--save-logits',
        action='store_true',
        help='also write DIR/STEM.npy: float32 C x H x W logits at the '
        'image\'s size')
    parser.add_argument(
        '--save-frames',
        action='store_true',
        help='also write the label map of each video frame, '
        'DIR/STEM/NNNNNN.png')
    parser.add_argument(
        '--device', default='cpu', help='where the model runs (cpu, cuda)')
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    if args.calibration_images < 0:
        parser.error('--calibration-images must be 0 or more')
    return args


def report(path: str, why: str) -> None:
    """One line on stderr for one bad input."""
    print(f'error: {path}: {why}', file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_output_dir(args.out_dir, '--out-dir')
    check_checkpoint(args.checkpoint)
    cfg = load_config(args.config, args.cfg_options)
    sources, failed = collect_sources(args.inputs, report, args.out_dir)
    if not sources:
        return 1
    inferencer = DeployInferencer(
        cfg,
        args.checkpoint,
        form=args.deploy_form,
        calibration_images=args.calibration_images,
        device=args.device,
        label_ids=args.label_ids,
        save_logits=args.save_logits,
        save_frames=args.save_frames)
    deployed = inferencer.deployed
    print(f'deploy form: {deployed.form.name} '
          f'({deployed.form.label(args.device)})')
    for note in deployed.notes:
        print(f'  {note}')
    if args.deploy_form == 'auto':
        print(f'auto chose {deployed.form.name}; pin it with --deploy-form '
              f'{deployed.form.name}')
    summary = inferencer.run(sources, args.out_dir, report)
    failed += summary.failed
    print(f'{summary.images} images, {summary.frames} video frames in '
          f'{summary.seconds:.1f} s ({summary.per_second:.2f}/s); '
          f'{failed} inputs failed; outputs in {args.out_dir}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
