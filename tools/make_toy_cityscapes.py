"""Write the built-in toy Cityscapes (the real layout, labels converted),
which configs/pspnet_repvgg_toy_cityscapes.py reads::

    python tools/make_toy_cityscapes.py data/toy_cityscapes
"""
import sys
import time

from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import ToolParser
from mmseg_repvgg.cli.outputs import check_output_dir
from mmseg_repvgg.datasets import toy_cityscapes as toy


def parse_args(argv=None):
    parser = ToolParser(description='Write the toy Cityscapes dataset.')
    parser.add_argument(
        'root', help='data root to write, e.g. '
        'data/toy_cityscapes')
    parser.add_argument(
        '--num-train',
        type=int,
        default=toy.DEFAULT_NUM_TRAIN,
        help=f'training images (default {toy.DEFAULT_NUM_TRAIN})')
    parser.add_argument(
        '--num-val',
        type=int,
        default=toy.DEFAULT_NUM_VAL,
        help=f'validation images (default {toy.DEFAULT_NUM_VAL})')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=toy.DEFAULT_SIZE,
        metavar=('H', 'W'),
        help='image size (default %(default)s)')
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument(
        '--nproc', type=int, default=1, help='worker processes (default 1)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace the leftImg8bit/, gtFine/ and split lists in ROOT')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_output_dir(args.root, 'ROOT')
    start = time.perf_counter()
    counts = toy.make_toy_cityscapes(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        size=tuple(args.size),
        seed=args.seed,
        nproc=args.nproc,
        overwrite=args.overwrite)
    summary = ', '.join(f'{n} {split}' for split, n in counts.items())
    print(f'wrote toy Cityscapes to {args.root}: {summary} images of '
          f'{args.size[0]}x{args.size[1]} (HxW) in '
          f'{time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    sys.exit(run_cli(main))
