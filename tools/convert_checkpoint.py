"""Convert a RepVGG checkpoint (official, mmpretrain, timm or ours;
train-time or fused; a file, URL or ``mmpretrain://repvgg-B2``) to our
layout, verified by a strict load; DST is replaced only on success::

    python tools/convert_checkpoint.py mmpretrain://repvgg-B2 \\
        checkpoints/repvgg-B2-deploy.pth --arch B2 --deploy
"""
import json
import sys

from mmseg_repvgg.checkpoint import convert_file
from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import ToolParser
from mmseg_repvgg.cli.outputs import check_output_file
from mmseg_repvgg.errors import ConfigError


def parse_arch(text: str):
    """An arch name (``B2``) or a JSON dict for a custom arch."""
    if not text.lstrip().startswith('{'):
        return text
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f'--arch {text!r} is not valid JSON: {err}') from None
    if 'group_layer_map' in arch:  # JSON object keys are strings
        arch['group_layer_map'] = {
            int(k): v
            for k, v in arch['group_layer_map'].items()
        }
    return arch


def main(argv=None):
    parser = ToolParser(
        description='Convert a RepVGG checkpoint (official, mmpretrain, timm '
        'or ours; train-time or fused) to our layout.')
    parser.add_argument(
        'src',
        help='source checkpoint: a local .pth, .bin or .safetensors file, an '
        'http(s) URL, or mmpretrain://repvgg-ARCH or '
        'timm://repvgg_arch.rvgg_in1k (downloaded once into torch\'s hub '
        'cache)')
    parser.add_argument('dst', help='destination .pth')
    parser.add_argument(
        '--arch',
        required=True,
        help='RepVGG arch of the checkpoint: A0..B3g4, or a JSON dict with '
        'num_blocks and width_factor')
    parser.add_argument(
        '--deploy', action='store_true', help='save the fused form')
    parser.add_argument(
        '--prefix',
        help="key prefix of the RepVGG inside SRC, e.g. 'backbone.'")
    args = parser.parse_args(argv)
    check_output_file(args.dst, 'DST', 'RepVGG-B2-train.pth')
    layout, count = convert_file(
        args.src,
        args.dst,
        parse_arch(args.arch),
        deploy=args.deploy,
        prefix=args.prefix)
    form = 'fused' if args.deploy else 'train-time'
    print(f'{args.src}: {layout} layout -> {args.dst}: {count} tensors '
          f'({form}, verified)')


if __name__ == '__main__':
    sys.exit(run_cli(main))
