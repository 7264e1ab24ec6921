"""Training numbers in mmseg's terms for the paper's six PSPNet configs.

    python tools/train_benchmark.py [NAME=CONFIG ...] [--render JSON]

Seconds per iteration (fp32, AMP), peak memory and inference fps; writes
train_benchmark.json, .md and .png to --out-dir and prints the table.
"""
import json
import os.path as osp
import sys

import torch

from mmseg_repvgg.benchmark.ceilings import machine_info
from mmseg_repvgg.benchmark.training import (PAPER_CONFIGS, PRECISIONS,
                                             TrainSettings, benchmark_config,
                                             paper_miou, render_table,
                                             write_training_report)
from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.cli.args import ToolParser, add_cfg_options
from mmseg_repvgg.config import load_config
from mmseg_repvgg.errors import ConfigError

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    parser = ToolParser(
        description='Seconds per iteration, peak training memory and '
        'inference fps of segmentor configs, in mmseg\'s terms.')
    parser.add_argument(
        'models',
        nargs='*',
        metavar='NAME=CONFIG',
        help='configs to measure (default: the six paper configs)')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='cuda (default when present) or cpu')
    parser.add_argument('--crop', type=int, nargs=2, default=(512, 1024))
    parser.add_argument('--batch', type=int, default=2, help='per GPU')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=8, help='timed')
    parser.add_argument(
        '--infer-shape', type=int, nargs=2, default=(1024, 2048))
    parser.add_argument('--infer-runs', type=int, default=5)
    parser.add_argument(
        '--precisions',
        nargs='+',
        default=list(PRECISIONS),
        choices=PRECISIONS)
    add_cfg_options(parser)  # applied to every config
    parser.add_argument(
        '--profile',
        nargs='+',
        default=[],
        metavar='NAME',
        help='also profile one training step of these configs: where the '
        'time goes (convs, BatchNorm, optimizer)')
    parser.add_argument(
        '--dry-run', action='store_true', help='mark the rows as a dry run')
    parser.add_argument('--out-dir', default='work_dirs/train_benchmark')
    parser.add_argument(
        '--render', metavar='JSON', help='print the table of a saved run')
    return parser.parse_args(argv)


def _models(args):
    if not args.models:
        return [(name, osp.join(REPO_ROOT, config))
                for name, config in PAPER_CONFIGS]
    models = []
    for text in args.models:
        name, equals, config = text.partition('=')
        if not equals or not name or not config:
            raise ConfigError(f'{text!r}: expected NAME=CONFIG')
        models.append((name, config))
    return models


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        try:
            with open(args.render) as f:
                saved = json.load(f)
            print('\n'.join(render_table(saved)))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f'--render {args.render}: not a saved '
                              f'train_benchmark.json ({err})') from err
        return 0
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError('--device cuda: torch sees no CUDA device; use '
                          '--device cpu')
    if min(args.warmup, args.iters, args.batch, args.infer_runs) < 1:
        raise ConfigError('--warmup, --iters, --batch and --infer-runs must '
                          'be at least 1')
    settings = TrainSettings(
        crop=tuple(args.crop),
        batch=args.batch,
        warmup=args.warmup,
        iters=args.iters,
        infer_shape=tuple(args.infer_shape),
        infer_runs=args.infer_runs,
        device=args.device,
        precisions=tuple(args.precisions),
        profile=tuple(args.profile))
    papers = paper_miou(osp.join(REPO_ROOT, 'configs', 'metafile.yml'))
    configs = [(name, load_config(path, args.cfg_options), path)
               for name, path in _models(args)]  # all read before any run
    results = dict(
        machine=machine_info(args.device),
        device=args.device,
        dry_run=args.dry_run,
        settings=dict(vars(settings)),
        rows=[])
    table = write_training_report(results, args.out_dir)
    for name, cfg, path in configs:
        row = benchmark_config(name, cfg, settings, log=_log)
        row.update(
            config=path,
            paper_miou=papers.get(osp.splitext(osp.basename(path))[0]))
        results['rows'].append(row)
        table = write_training_report(results, args.out_dir)  # so far
    print('\n'.join(table))
    parts = [[*row['train'].values(), row['inference']]
             for row in results['rows']]
    return 1 if any('error' in p for row in parts for p in row) else 0


def _log(line: str) -> None:
    print(f'[train-benchmark] {line}', file=sys.stderr, flush=True)


if __name__ == '__main__':
    sys.exit(run_cli(main))
