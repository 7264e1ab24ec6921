"""The GPU path in one prepared run (issue 19): install, train, test, bench.

On a bare GPU machine (torch with CUDA, no mmcv/mmengine/mmseg, no package
registry), carrying ``wheelhouse/`` (``bash tools/gpu_wheelhouse.sh``)::

    bash tools/gpu_check.sh [--budget 480] [--out DIR] [--no-compiled]

1. installs mmengine, mmsegmentation and their missing dependencies from
   the wheelhouse and builds mmcv 2.1.0 from its source there;
2. trains the toy config for one epoch (16 iterations) with
   ``tools/dist_train.sh CONFIG 1 --amp`` (one process, SyncBN kept), tests
   it fused, unfused and as ``deploy_final.pth`` (equal mIoU);
3. benchmarks mmseg's PSPNet R50/R101-D8 against PSPNet RepVGG B1g2(-fast)
   and B2(-fast) at 1024x2048 and 512x1024 in fp32 and fp16 forms;
4. writes ``gpu_check.md`` (the table, PASS/FAIL lines), ``gpu_check.json``
   and ``gpu_check.log`` to ``--out`` (default: ``$OUT``).

``--device cpu --skip-install`` is the dry run of the test suite: tiny
model, 32x64 images, no AMP, SyncBN or fp16 (one SKIP line each).
Exit status: 0 when every check passed or was skipped, 1 when one failed,
2 for bad input (one ``error:`` line).

This file uses the standard library only until the install is done.
"""
import argparse
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
import time
from importlib import metadata
from typing import Dict, List, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PINS_FILE = osp.join(REPO_ROOT, 'tools', 'gpu_wheelhouse.txt')
PREPARE = 'bash tools/gpu_wheelhouse.sh'
#: Modules the check needs, imported in a fresh process after the install
#: (mmengine's collect_env imports distutils, which Python 3.12 has only
#: through setuptools).
IMPORTS = ('distutils', 'pkg_resources', 'mmcv', 'mmcv.ops', 'mmengine',
           'mmseg', 'mmseg_repvgg')


class InstallError(Exception):
    """The install cannot go on; the message names the fix."""


def read_pins(path: str = PINS_FILE) -> List[Tuple[str, str]]:
    """``(name, version)`` of each ``name==version`` line."""
    pins = []
    with open(path) as f:
        for line in f:
            text = line.split('#', 1)[0].strip()
            if not text:
                continue
            match = re.fullmatch(r'([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)',
                                 text)
            if not match:
                raise InstallError(f'{path}: {text!r} is not NAME==VERSION')
            pins.append(match.groups())
    return pins


def _norm(name: str) -> str:
    return re.sub(r'[-_.]+', '_', name).lower()


def _dist_of(filename: str) -> Tuple[str, str]:
    """(normalized name, version) of a wheel or sdist file name."""
    if filename.endswith('.whl'):
        name, version = filename.split('-')[:2]
    else:
        name, _, version = filename[:-len('.tar.gz')].rpartition('-')
    return _norm(name), version


def wheelhouse_files(wheelhouse: str,
                     pins: List[Tuple[str, str]]) -> Dict[str, str]:
    """The file of each pin in ``wheelhouse`` (mmcv: its source).

    Raises:
        InstallError: No wheelhouse, a stale one, or a file missing.
    """
    carry = ('then carry it: the device call\'s carry: ["wheelhouse"]')
    if not osp.isdir(wheelhouse):
        raise InstallError(f'no wheelhouse at {wheelhouse}: run {PREPARE} '
                           f'on a machine with the package registry, {carry}')
    listed = osp.join(wheelhouse, osp.basename(PINS_FILE))
    if not osp.isfile(listed) or read_pins(listed) != pins:
        raise InstallError(f'the wheelhouse at {wheelhouse} was made for '
                           f'other pins than tools/gpu_wheelhouse.txt: run '
                           f'{PREPARE} again, {carry}')
    found = {}
    for filename in os.listdir(wheelhouse):
        if filename.endswith(('.whl', '.tar.gz')):
            found[_dist_of(filename)] = osp.join(wheelhouse, filename)
    files, missing = {}, []
    for name, version in pins:
        path = found.get((_norm(name), version))
        wanted = path is not None and (path.endswith('.tar.gz') == (name
                                                                    == 'mmcv'))
        if wanted:
            files[name] = path
        else:
            missing.append(f'{name}=={version}')
    if missing:
        raise InstallError(f'the wheelhouse at {wheelhouse} lacks '
                           f'{", ".join(missing)}: run {PREPARE} again, '
                           f'{carry}')
    return files


def installed_version(name: str):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mmcv_build_env(jobs: int) -> Dict[str, str]:
    """How mmcv's ops are built there: for the CPU only.

    A CUDA build of mmcv's ops takes far longer than the device budget,
    and mmseg only needs ``mmcv.ops`` to import: PSPNet, SyncBN and RepVGG
    run on torch's own CUDA kernels. With the GPU hidden
    (``CUDA_VISIBLE_DEVICES=``) and ``FORCE_CUDA=0``, mmcv's setup.py
    builds its ops as a CPU extension.
    """
    return dict(
        MMCV_WITH_OPS='1',
        FORCE_CUDA='0',
        CUDA_VISIBLE_DEVICES='',
        MAX_JOBS=str(jobs))


def pending_pins(pins: List[Tuple[str, str]],
                 have_pkg_resources: bool) -> List[Tuple[str, str]]:
    """The pins not installed at their version; setuptools only where
    ``pkg_resources`` is missing (setuptools >= 82)."""
    return [(name, version) for name, version in pins
            if (not have_pkg_resources if name ==
                'setuptools' else installed_version(name) != version)]


def install_steps(python: str, files: Dict[str, str],
                  pending: List[Tuple[str, str]],
                  jobs: int) -> List[Tuple[str, List[str], Dict[str, str]]]:
    """``(name, command, extra environment)`` of each install step: the
    wheels (setuptools first), then mmcv built from its source."""
    pip = [
        python, '-m', 'pip', 'install', '--no-index', '--no-deps',
        '--no-cache-dir', '--disable-pip-version-check'
    ]
    names = sorted((name for name, _ in pending if name != 'mmcv'),
                   key=lambda name: name != 'setuptools')
    steps = []
    if names:
        steps.append(('wheels', pip + [files[name] for name in names], {}))
    if any(name == 'mmcv' for name, _ in pending):
        steps.append(('mmcv build (CPU ops)',
                      pip + ['--no-build-isolation', files['mmcv']],
                      mmcv_build_env(jobs)))
    return steps


def _run_logged(name: str, command: List[str], env: Dict[str, str],
                log_path: str) -> None:
    start = time.time()
    with open(log_path, 'a') as log:
        log.write(f'\n===== install: {name}: {" ".join(command)}\n')
        log.flush()
        code = subprocess.call(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={
                **os.environ,
                **env
            })
    print(f'[gpu-check] install: {name}: exit {code} '
          f'({time.time() - start:.0f} s)')
    if code != 0:
        with open(log_path) as f:
            tail = f.read().splitlines()[-25:]
        print('\n'.join(tail), file=sys.stderr)
        raise InstallError(f'install step {name!r} failed (exit {code}); '
                           f'the output is in {log_path}')


def install(wheelhouse: str, log_path: str) -> None:
    """Install what the check needs from the wheelhouse, then import it."""
    pins = read_pins()
    have = importlib.util.find_spec('pkg_resources') is not None
    pending = pending_pins(pins, have)
    if pending:
        files = wheelhouse_files(wheelhouse, pins)
        for name, command, env in install_steps(sys.executable, files, pending,
                                                os.cpu_count() or 1):
            _run_logged(name, command, env, log_path)
    else:
        print('[gpu-check] install: every pin is installed already')
    probe = [sys.executable, '-c', 'import ' + ', '.join(IMPORTS)]
    _run_logged('import check', probe, {}, log_path)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='The GPU path in one prepared run (issue 19).')
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
        help=f'what {PREPARE} filled (default: <repo>/wheelhouse)')
    parser.add_argument(
        '--skip-install',
        action='store_true',
        help='the packages are installed already (the dry run)')
    parser.add_argument(
        '--budget',
        type=float,
        help='seconds for the whole run; later steps are skipped when it '
        'runs out (default: 480 on cuda, none on cpu)')
    parser.add_argument(
        '--no-compiled',
        action='store_true',
        help='leave out the torch.compile forms (minutes of compiling)')
    args = parser.parse_args(argv)
    if args.budget is None and args.device == 'cuda':
        args.budget = 480.0
    return args


def main(argv=None) -> int:
    started = time.time()
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log_path = osp.join(args.out, 'gpu_check.log')
    open(log_path, 'w').close()
    if not args.skip_install:
        try:
            install(args.wheelhouse, log_path)
        except InstallError as err:
            print(f'error: {err}', file=sys.stderr)
            return 2
    # Only now: these need the packages just installed (whose folders this
    # process may have listed before they existed).
    importlib.invalidate_caches()
    from mmseg_repvgg.benchmark.gpu_check import run_check
    from mmseg_repvgg.errors import run_cli
    return run_cli(lambda _: run_check(args, log_path, started))


if __name__ == '__main__':
    sys.exit(main())
