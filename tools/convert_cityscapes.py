"""Convert the official Cityscapes download into mmseg's label files
(``*_gtFine_labelTrainIds.png`` and, where missing, the label and instance
ID maps) and the split lists::

    python tools/convert_cityscapes.py data/cityscapes --nproc 8
"""
import sys
import time

from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import ToolParser
from mmseg_repvgg.datasets.cityscapes_convert import SPLITS, convert_cityscapes


def parse_args(argv=None):
    parser = ToolParser(
        description='Convert Cityscapes polygons to label images.')
    parser.add_argument('data_root', help='Cityscapes root directory')
    parser.add_argument(
        '--nproc', type=int, default=1, help='worker processes (default 1)')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=list(SPLITS),
        help='splits to convert if present (default: %(default)s)')
    parser.add_argument(
        '--gt-dir',
        default='gtFine',
        help='annotation directory in DATA_ROOT (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    counts = convert_cityscapes(
        args.data_root,
        nproc=args.nproc,
        splits=args.splits,
        gt_dir=args.gt_dir)
    summary = ', '.join(f'{n} {split}' for split, n in counts.items())
    print(f'converted {summary} images in {args.data_root} in '
          f'{time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    sys.exit(run_cli(main))
