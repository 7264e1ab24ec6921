"""The GPU path in one prepared run: install, train, test, benchmark.

On a bare GPU machine (torch with CUDA, no mmcv/mmengine/mmseg, no package
registry), carrying ``wheelhouse/`` (``bash tools/gpu_wheelhouse.sh``)::

    bash tools/gpu_check.sh [--budget 330] [--out DIR] [--only PARTS]

1. installs the wheels and builds mmcv 2.1.0 from its source (CPU ops),
   measuring PSP's pooling op by op on the idle GPU meanwhile (``pool``);
2. ``train``: trains the toy config for 12 epochs with
   ``tools/dist_train.sh CONFIG 1 --amp`` (one process, SyncBN kept),
   tests it fused, unfused, as ``deploy_final.pth`` (equal mIoU) and in
   each fp16 form (within 0.1 mIoU of fused fp32), runs the CUDA graph
   tests;
3. ``bench``: PSPNet R50/R101-D8 against RepVGG B1g2-fast and B2-fast at
   1024x2048 and 512x1024, every model in every GPU form, judged each in
   its own best form;
4. ``trainbench``: seconds per iteration (fp32, AMP), peak training memory
   and inference fps of the six paper configs;
5. ``compiled`` (only with ``--only ...,compiled``): torch.compile forms;
6. writes ``gpu_check.md`` (tables, PASS/FAIL lines), ``gpu_check.json``
   and ``gpu_check.log`` to ``--out`` (default: ``$OUT``), always.

``--device cpu --skip-install`` is the dry run of the test suite: tiny
models, 32x64 images; what needs CUDA is skipped with one line each.
Exit status: 0 when every check passed or was skipped, 1 when one failed,
2 for bad input (one ``error:`` line).

This file uses the standard library only until the install is done.
"""
import argparse
import os
import os.path as osp
import sys
import time

TOOLS = osp.dirname(osp.abspath(__file__))
if TOOLS not in sys.path:  # the check's own modules, tools/gpu/
    sys.path.insert(0, TOOLS)

from gpu.install import InstallError, install  # noqa: E402
from gpu.plan import DEFAULT_PARTS, PARTS, parse_parts  # noqa: E402

REPO_ROOT = osp.dirname(TOOLS)
#: Seconds for the whole run on CUDA: later steps are skipped once spent,
#: so a call ends within about 6 minutes and a second one fits the allowance.
CUDA_BUDGET = 330.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='The GPU path in one prepared run.')
    parser.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    parser.add_argument(
        '--out',
        default=os.environ.get('OUT') or 'work_dirs/gpu_check',
        help='where gpu_check.md/.json/.log go (default: $OUT, else '
        'work_dirs/gpu_check)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/gpu_check_work',
        help='scratch: toy data, training, benchmark outputs')
    parser.add_argument(
        '--wheelhouse',
        default=osp.join(REPO_ROOT, 'wheelhouse'),
        help='what bash tools/gpu_wheelhouse.sh filled (default: '
        '<repo>/wheelhouse)')
    parser.add_argument(
        '--skip-install',
        action='store_true',
        help='the packages are installed already (the dry run)')
    parser.add_argument(
        '--only',
        default=','.join(DEFAULT_PARTS),
        metavar='PARTS',
        help=f'comma-separated parts of {",".join(PARTS)} (default: '
        f'{",".join(DEFAULT_PARTS)}); the install runs unless '
        '--skip-install')
    parser.add_argument(
        '--budget',
        type=float,
        help='seconds for the whole run; later steps are skipped when it '
        f'runs out (default: {CUDA_BUDGET:.0f} on cuda, none on cpu)')
    args = parser.parse_args(argv)
    args.parts = parse_parts(args.only)  # ValueError: main's error line
    if args.budget is None and args.device == 'cuda':
        args.budget = CUDA_BUDGET
    return args


def _pool_during_build(args, log_path: str, found: dict):
    """Run the torch-only pooling benchmark while mmcv compiles."""
    if 'pool' not in args.parts:
        return None
    from gpu.steps import Steps

    def run():
        # The plan's default shapes; its own module needs mmseg.
        path = osp.join(osp.abspath(args.work_dir), 'pool.json')
        os.makedirs(osp.dirname(path), exist_ok=True)
        code, _ = Steps(log_path, time.time(), None).run(
            'pooling benchmark (during the mmcv build)', [
                sys.executable, 'tools/gpu/pool_bench.py', '--device',
                args.device, '--out', path
            ])
        found.update(path=path, code=code)

    return run


def main(argv=None) -> int:
    started = time.time()
    try:
        args = parse_args(argv)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    log_path = osp.join(args.out, 'gpu_check.log')
    open(log_path, 'w').close()
    pooled: dict = {}
    if not args.skip_install:
        try:
            install(args.wheelhouse, log_path,
                    _pool_during_build(args, log_path, pooled))
        except InstallError as err:
            print(f'error: {err}', file=sys.stderr)
            return 2
    # Only now: these need the packages just installed.
    from gpu.check import read_pool, run_check

    from mmseg_repvgg.cli import run_cli
    pool = read_pool(pooled['path'], pooled['code']) if pooled else None
    return run_cli(lambda _: run_check(args, log_path, started, pool))


if __name__ == '__main__':
    sys.exit(main())
