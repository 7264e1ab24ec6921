"""Export a PSPNet-RepVGG segmentor to ONNX, fused, and check it against
PyTorch in onnxruntime (the tool fails above the tolerance)::

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx \\
        --shape 512 1024 --dynamic
"""
import sys

from mmseg_repvgg.checkpoint import load_segmentor
from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import ToolParser, add_cfg_options
from mmseg_repvgg.cli.outputs import check_output_file
from mmseg_repvgg.config import load_config
from mmseg_repvgg.deploy.onnx_export import (check_onnx, export_onnx,
                                             output_stride)


def parse_args(argv=None):
    parser = ToolParser(
        description='Export a fused RepVGG segmentor to ONNX and compare '
        'onnxruntime with PyTorch.')
    parser.add_argument('config', help='the training or deploy config')
    parser.add_argument('checkpoint', help='train-time or deploy checkpoint')
    parser.add_argument('--out', required=True, help='the .onnx to write')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        required=True,
        metavar=('H', 'W'),
        help="input size; a multiple of the model's output stride")
    parser.add_argument(
        '--argmax',
        action='store_true',
        help='output the label map (N, H, W) instead of the logits')
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='dynamic batch size, height and width')
    parser.add_argument(
        '--tol',
        type=float,
        default=1e-4,
        help='largest allowed difference, relative to the largest logit '
        '(default: 1e-4)')
    add_cfg_options(parser)
    return parser.parse_args(argv)


def say(step: str) -> None:
    """A progress line, so a long export does not look stuck."""
    print(f'[export] {step} ...', flush=True)


def main(argv=None):
    args = parse_args(argv)
    check_output_file(args.out, '--out', 'model.onnx')
    cfg = load_config(args.config, args.cfg_options)
    say(f'loading {args.checkpoint} (fused if train-time)')
    model, _ = load_segmentor(cfg, args.checkpoint)
    height, width = args.shape
    say(f'exporting to {args.out} with torch\'s dynamo exporter (the slow '
        'step)')
    report = export_onnx(
        model,
        args.out, (height, width),
        argmax=args.argmax,
        dynamic=args.dynamic)
    print(f'{args.checkpoint}: {report.summary()}')
    say('checking the export in onnxruntime against PyTorch')
    shapes = [(1, 3, height, width)]
    if args.dynamic:
        stride = output_stride(model)
        shapes.append((2, 3, height + stride, width + stride))
    for check in check_onnx(
            args.out, model, shapes, argmax=args.argmax, tol=args.tol):
        if args.argmax:
            ties = (f'differ at {check.mismatched} pixels, all near-ties'
                    if check.mismatched else 'equal')
            print(f'input {check.shape}: onnxruntime labels and PyTorch '
                  f'labels {ties}')
        else:
            print(f'input {check.shape}: max abs difference of the logits '
                  f'{check.max_abs:.3g} ({check.rel:.3g} relative; '
                  f'tolerance {args.tol:g})')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    sys.exit(run_cli(main))
