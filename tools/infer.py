"""Segment images, folders of images and videos with a trained segmentor.

    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...] --out-dir DIR
        [--deploy-form FORM] [--calibration-images N] [--label-ids]
        [--save-logits] [--save-frames] [--device cpu]
        [--cfg-options key=value ...]

INPUT is an image file, a folder (its images, recursively) or a video
(.mp4 .avi .mov .mkv). CHECKPOINT is a train-time or deploy checkpoint
(``deploy_final.pth``); the model runs in the deploy form ``--deploy-form``
(default ``fused``: the re-parameterized fp32 model; ``auto`` picks the
fastest form that runs here, the int8 forms calibrate on
``--calibration-images`` training images). Each image goes through the
config's test pipeline by mmseg's ``MMSegInferencer``, exactly as
``tools/test.py`` runs it, so the label maps equal the test loop's
predictions (``tools/test.py --out``).

For each image ``STEM.EXT`` it writes:

* ``DIR/STEM.png``: the label map at the image's size, uint8 train IDs
  (``--label-ids``: Cityscapes label IDs, as the test server wants);
* ``DIR/vis/STEM.png``: the prediction over the image, drawn by mmseg's
  visualizer;
* ``DIR/STEM.npy`` with ``--save-logits``: float32 C x H x W logits, after
  mmseg's resize to the image's size.

A video gives ``DIR/vis/STEM.mp4`` (the overlay, same size and frame
rate) and, with ``--save-frames``, ``DIR/STEM/NNNNNN.png`` (and ``.npy``)
per frame. Files are written atomically: never half-written.

A bad input (missing, unreadable, an empty folder, an unknown extension)
gets one line on stderr and the others go on. Two inputs with the same
stem would write the same files: the first keeps the name, the later ones
are reported and skipped (give them their own ``--out-dir``). Exit status:
0 if every input was segmented, 1 if some failed, 2 for a usage error
(bad config, checkpoint or option).

Example, the Cityscapes test set for the server::

    python tools/infer.py configs/pspnet_repvgg_b1g2_cityscapes.py \\
        work_dirs/pspnet_repvgg_b1g2_cityscapes/deploy_final.pth \\
        data/cityscapes/leftImg8bit/test --out-dir results --label-ids
"""
import argparse
import sys

# First: registers RepVGG, the datasets, the hooks and the safe checkpoint
# loader into the registries (it patches nothing).
import mmseg_repvgg  # noqa: F401  isort: skip

from mmseg_repvgg.apis import DeployInferencer, collect_sources
from mmseg_repvgg.cli import CfgOptions, check_checkpoint, load_config, run_cli
from mmseg_repvgg.cli.args import ToolParser, add_forms_argument
from mmseg_repvgg.cli.outputs import check_output_dir
from mmseg_repvgg.deploy.calibration import CALIBRATION_IMAGES


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
    parser.add_argument(
        '--calibration-images',
        type=int,
        default=CALIBRATION_IMAGES,
        help='training images that calibrate the int8 forms (default: '
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
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptions,
        help='override config settings, key=value pairs (as tools/test.py '
        'takes them)')
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
