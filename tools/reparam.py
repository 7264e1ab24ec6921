"""Turn a trained PSPNet-RepVGG checkpoint into a deploy checkpoint, fused
and checked equal on a random input, with its config beside it::

    python tools/reparam.py CONFIG work_dirs/x/epoch_40.pth deploy.pth
    python tools/test.py deploy.py deploy.pth
"""
import os.path as osp
import sys

from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import ToolParser, add_cfg_options
from mmseg_repvgg.cli.outputs import check_output_file
from mmseg_repvgg.config import load_config
from mmseg_repvgg.deploy import reparam_checkpoint


def parse_args(argv=None):
    parser = ToolParser(
        description='Fuse a trained RepVGG segmentor into its deploy form.')
    parser.add_argument('config', help='the training config')
    parser.add_argument('checkpoint', help='the train-time checkpoint')
    parser.add_argument(
        'out',
        help='the deploy checkpoint to write (.pth); its config is '
        'written beside it with .py')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(128, 256),
        metavar=('H', 'W'),
        help='size of the random input of the equality check')
    parser.add_argument(
        '--tol',
        type=float,
        default=1e-4,
        help='largest allowed difference of the logits, relative to the '
        'largest logit (default: 1e-4)')
    add_cfg_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_output_file(args.out, 'OUT', 'deploy.pth')
    check_output_file(
        osp.splitext(args.out)[0] + '.py', 'its config', 'deploy.py')
    cfg = load_config(args.config, args.cfg_options)
    result = reparam_checkpoint(
        cfg,
        args.checkpoint,
        args.out,
        shape=(1, 3, *args.shape),
        tol=args.tol)
    print(f'{args.checkpoint}: {result.report.summary()}')
    print(f'max abs difference of the logits: {result.max_abs:.3g} '
          f'({result.rel:.3g} of the largest logit; tolerance {args.tol:g})')
    print(f'wrote {result.checkpoint} and {result.config}')


if __name__ == '__main__':
    sys.exit(run_cli(main))
