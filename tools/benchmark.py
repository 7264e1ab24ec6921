"""Measure segmentors' speed and memory in every inference form, side by side.

    python tools/benchmark.py configs/pspnet_repvgg_b1g2_fast_cityscapes.py \\
        configs/pspnet_repvgg_b2_fast_cityscapes.py --runs 3

Against mmseg's PSPNet R50/R101-D8, with the machine's ceilings; writes
benchmark.json, .md and .png to --out-dir. See docs/benchmark.md.
"""
import sys

import torch

from mmseg_repvgg.benchmark import (BenchmarkInterrupted, Settings, miou_check,
                                    render_markdown, run_benchmark,
                                    write_outputs)
from mmseg_repvgg.benchmark.settings import (BASELINE_FORMS, CANDIDATE_FORMS,
                                             DEFAULT_BASELINES,
                                             split_model_arg)
from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import (ToolParser, add_calibration_args,
                                   add_forms_argument)
from mmseg_repvgg.cli.outputs import check_output_dir
from mmseg_repvgg.errors import ConfigError, Interrupted


def parse_args(argv=None):
    parser = ToolParser(
        description='Benchmark segmentors in every inference form: latency, '
        'images/s, peak memory, GFLOP/s against the measured ceiling.')
    parser.add_argument(
        'models',
        nargs='*',
        metavar='CONFIG[=CHECKPOINT][@FORM,...]',
        help='models to measure; without a checkpoint, random weights; '
        '@FORM,... overrides --forms/--baseline-forms for this model')
    parser.add_argument(
        '--baselines',
        nargs='*',
        default=list(DEFAULT_BASELINES),
        metavar='CONFIG[=CHECKPOINT][@FORM,...]',
        help="baseline models (default: mmseg's PSPNet R50-D8 and R101-D8); "
        'give the option alone for none')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(512, 1024),
        metavar=('H', 'W'),
        help='input size (default: 512 1024)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument(
        '--pretrained-backbone',
        action='store_true',
        help="RepVGG models without a checkpoint start from their config's "
        'init_cfg backbone (a file, or a name downloaded once), head random')
    parser.add_argument(
        '--warmup',
        type=int,
        default=1,
        help='untimed runs per form; the first measures memory (default 1)')
    parser.add_argument(
        '--runs', type=int, default=3, help='timed runs (default 3)')
    parser.add_argument(
        '--device',
        default='auto',
        help='auto (CUDA when present), cpu, '
        'cuda or cuda:N')
    parser.add_argument(
        '--threads', type=int, help='torch and onnxruntime threads')
    add_forms_argument(
        parser,
        '--forms',
        list(CANDIDATE_FORMS),
        help='forms of RepVGG models')
    add_forms_argument(
        parser,
        '--baseline-forms',
        list(BASELINE_FORMS),
        help='forms of the other models')
    add_forms_argument(
        parser,
        '--profile-forms', ['fused', 'reduced', 'int8'],
        empty=True,
        help='forms whose backbone convolutions are profiled')
    parser.add_argument(
        '--pair',
        nargs=2,
        action='append',
        metavar=('REPVGG', 'BASELINE'),
        help='model names to compare (default: B1g2 with R50, B2 with R101)')
    parser.add_argument(
        '--matmul-size',
        type=int,
        default=4096,
        help='N of the N x N matmul ceiling (default 4096)')
    parser.add_argument(
        '--conv-shape',
        type=int,
        nargs=3,
        action='append',
        metavar=('C', 'H', 'W'),
        help='a 3x3 conv of the conv ceiling; repeat for more (default: '
        '256 128 256 and 512 64 128)')
    parser.add_argument(
        '--miou-check',
        nargs=2,
        metavar=('CONFIG', 'CHECKPOINT'),
        help='also score the reduced-precision forms on the validation '
        "data of CONFIG against fp32 (a trained model's checkpoint)")
    add_forms_argument(
        parser,
        '--miou-forms', [
            'fused', 'reduced', 'reduced_lowres', 'winograd_lowres', 'int8',
            'int8_lowres'
        ],
        help='forms scored by --miou-check (default: fused reduced '
        'reduced_lowres winograd_lowres int8 int8_lowres; forms this '
        'machine cannot run natively are skipped)')
    parser.add_argument(
        '--miou-max-images',
        type=int,
        help='stop the mIoU check after this many images')
    add_calibration_args(
        parser,
        'training images of the --miou-check config that calibrate the int8 '
        'forms (default %(default)s)',
        emulated='also run reduced precisions the hardware only emulates '
        '(bf16 without AVX512-BF16: minutes per form)')
    parser.add_argument(
        '--out-dir',
        default='work_dirs/benchmark',
        help='where benchmark.json/.md/.png go')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_output_dir(args.out_dir, '--out-dir')
    specs = [split_model_arg(m) for m in args.models + args.baselines]
    if not specs and not args.miou_check:
        raise ConfigError('nothing to measure: give configs or --miou-check')
    settings = Settings(
        shape=tuple(args.shape),
        batch=args.batch,
        warmup=args.warmup,
        runs=args.runs,
        device=args.device,
        threads=args.threads,
        forms=args.forms,
        baseline_forms=args.baseline_forms,
        profile_forms=args.profile_forms,
        matmul_size=args.matmul_size,
        conv_shapes=[tuple(s) for s in args.conv_shape]
        if args.conv_shape else Settings.conv_shapes,
        allow_emulated=args.allow_emulated,
        pretrained_backbone=args.pretrained_backbone)
    if args.calibration_images < 1:
        raise ConfigError('--calibration-images must be at least 1')
    if settings.threads:  # the mIoU check runs first
        torch.set_num_threads(settings.threads)
    miou = None
    if args.miou_check:
        miou = miou_check(
            *args.miou_check,
            forms=args.miou_forms,
            device=settings.device,
            max_images=args.miou_max_images,
            calibration_images=args.calibration_images,
            allow_emulated=args.allow_emulated,
            log=lambda line: print(f'[benchmark] {line}', file=sys.stderr))
    pairs = [tuple(p) for p in args.pair] if args.pair else None
    try:
        results = run_benchmark(specs, settings, pairs=pairs, miou=miou)
    except BenchmarkInterrupted as stop:
        paths = write_outputs(stop.results, args.out_dir)
        count = sum(len(m['forms']) for m in stop.results['models'])
        raise Interrupted(f'kept the forms measured so far ({count}) in '
                          f'{", ".join(paths.values())}') from None
    paths = write_outputs(results, args.out_dir)
    print(render_markdown(results))
    print(f'wrote {", ".join(paths.values())}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(run_cli(main))
