"""The GPU check's install half: the carried wheels, then mmcv's build.

Standard library only: it runs on a machine without mmengine, mmcv or
mmseg (and without a package registry). The wheels go in first; mmcv then
builds in the background while ``during_build`` (the GPU check's
torch-only pooling benchmark) uses the idle GPU; then every module the
check needs is imported in this process, which goes on to run the check.
"""
import importlib
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
import time
from importlib import metadata
from typing import Callable, Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PINS_FILE = osp.join(REPO_ROOT, 'tools', 'gpu_wheelhouse.txt')
PREPARE = 'bash tools/gpu_wheelhouse.sh'
#: Modules the check needs, imported after the install (mmengine's
#: collect_env imports distutils, which Python 3.12 has only through
#: setuptools).
IMPORTS = ('distutils', 'pkg_resources', 'mmcv', 'mmcv.ops', 'mmengine',
           'mmseg', 'mmseg_repvgg')
#: (name, command, extra environment) of one install step.
Step = Tuple[str, List[str], Dict[str, str]]


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


def mmcv_build_env(jobs: int, quick: bool = True) -> Dict[str, str]:
    """How mmcv's ops are built there: for the CPU only, unoptimized.

    A CUDA build of mmcv's ops takes far longer than the device budget,
    and mmseg only needs ``mmcv.ops`` to import: PSPNet, SyncBN and RepVGG
    run on torch's own CUDA kernels. With the GPU hidden
    (``CUDA_VISIBLE_DEVICES=``) and ``FORCE_CUDA=0``, mmcv's setup.py
    builds its ops as a CPU extension. Every op is still built (mmseg
    imports them all), but nothing here runs them, so ``quick`` compiles
    without optimization or debug info: with ``CFLAGS`` set, setuptools
    passes it instead of Python's own ``-g -O3`` (torch's build.ninja then
    reads ``cflags = -O0 -g0 -fPIC ...``), which takes the compiler less
    time.
    """
    env = dict(
        MMCV_WITH_OPS='1',
        FORCE_CUDA='0',
        CUDA_VISIBLE_DEVICES='',
        MAX_JOBS=str(jobs))
    if quick:
        env['CFLAGS'] = '-O0 -g0'
    return env


def pending_pins(pins: List[Tuple[str, str]],
                 have_pkg_resources: bool) -> List[Tuple[str, str]]:
    """The pins not installed at their version; setuptools only where
    ``pkg_resources`` is missing (setuptools >= 82)."""
    return [(name, version) for name, version in pins
            if (not have_pkg_resources if name ==
                'setuptools' else installed_version(name) != version)]


def install_steps(python: str,
                  files: Dict[str, str],
                  pending: List[Tuple[str, str]],
                  jobs: int,
                  quick: bool = True) -> List[Step]:
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
                      mmcv_build_env(jobs, quick)))
    return steps


def _log_header(name: str, command: List[str], log_path: str) -> None:
    with open(log_path, 'a') as log:
        log.write(f'\n===== install: {name}: {" ".join(command)}\n')


def _start(step: Step, log_path: str) -> subprocess.Popen:
    name, command, env = step
    _log_header(name, command, log_path)
    log = open(log_path, 'a')
    # Niced: what runs meanwhile (a GPU benchmark) gets the CPU first.
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env={
            **os.environ,
            **env
        },
        preexec_fn=lambda: os.nice(10))
    log.close()  # the child holds its own descriptor
    return proc


def _finish(name: str, proc: subprocess.Popen, started: float,
            log_path: str) -> int:
    code = proc.wait()
    print(
        f'[gpu-check] install: {name}: exit {code} '
        f'({time.time() - started:.0f} s)',
        flush=True)
    if code != 0:
        with open(log_path) as f:
            print('\n'.join(f.read().splitlines()[-25:]), file=sys.stderr)
    return code


def _run_step(step: Step,
              log_path: str,
              during: Optional[Callable[[], None]] = None) -> int:
    """Run one step, ``during()`` meanwhile; its exit code."""
    started = time.time()
    proc = _start(step, log_path)
    if during is not None:
        during()
    return _finish(step[0], proc, started, log_path)


def import_check(log_path: str) -> None:
    """Import every module the check needs (a missing or broken one is an
    InstallError naming it): ``distutils`` and ``pkg_resources`` in a
    fresh interpreter (setuptools' distutils shim is set up at start-up,
    and setuptools may just have been installed), the rest here, where
    the check goes on to use them."""
    shims = [m for m in IMPORTS if m in ('distutils', 'pkg_resources')]
    probe = ('shims', [sys.executable, '-c', 'import ' + ', '.join(shims)], {})
    if _run_step(probe, log_path) != 0:
        raise InstallError(f'import {", ".join(shims)} failed after the '
                           f'install; the output is in {log_path}')
    importlib.invalidate_caches()
    started = time.time()
    for name in IMPORTS:
        if name in shims:
            continue
        try:
            importlib.import_module(name)
        except Exception as err:  # ImportError, or mmcv's version assert
            raise InstallError(f'import {name} failed after the install '
                               f'({type(err).__name__}: {err})') from err
    print(
        f'[gpu-check] install: import check: ok '
        f'({time.time() - started:.0f} s)',
        flush=True)


def install(wheelhouse: str,
            log_path: str,
            during_build: Optional[Callable[[], None]] = None) -> None:
    """Install what the check needs from the wheelhouse, then import it.

    ``during_build`` runs while mmcv compiles (or after the wheels when
    mmcv is installed already). A quick (unoptimized) build that fails is
    retried once with the default flags.
    """
    pins = read_pins()
    have = importlib.util.find_spec('pkg_resources') is not None
    pending = pending_pins(pins, have)
    steps = []
    if pending:
        files = wheelhouse_files(wheelhouse, pins)
        steps = install_steps(sys.executable, files, pending,
                              os.cpu_count() or 1)
    else:
        print('[gpu-check] install: every pin is installed already')
    for step in steps:
        build = step[0].startswith('mmcv')
        code = _run_step(step, log_path, during_build if build else None)
        if code != 0 and build:
            print(
                '[gpu-check] install: retrying mmcv with the default '
                'compiler flags',
                flush=True)
            retry = install_steps(
                sys.executable,
                files, [('mmcv', '')],
                os.cpu_count() or 1,
                quick=False)[0]
            code = _run_step(retry, log_path)
        if code != 0:
            raise InstallError(f'install step {step[0]!r} failed (exit '
                               f'{code}); the output is in {log_path}')
        if build:
            during_build = None
    if during_build is not None:
        during_build()
    import_check(log_path)
