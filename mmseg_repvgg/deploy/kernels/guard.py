"""Private torch routes are used only once their check passed in a child
process (where a crash harms nobody) and here; else callers fall back."""
import functools
import importlib
import os.path as osp
import signal
import subprocess
import sys
from typing import List, Optional, Set

import torch
from mmengine.logging import MMLogger

#: torch versions (major.minor) the private routes were checked on.
CHECKED_TORCH = ('2.13', )
#: Seconds a child check may take (it imports torch first).
PROBE_TIMEOUT_S = 120

#: The keys that have logged their one line (routes, 'torch_version').
_logged: Set[str] = set()

# The kernels' folder and parents as bare packages: no __init__ (mmseg).
_CHILD_CODE = '''
import importlib, os, sys, types
folder, module, function = sys.argv[1:4]
root = os.path.dirname(os.path.dirname(folder))
for name, path in (('_p', root), ('_p.deploy', os.path.dirname(folder)),
                   ('_p.deploy.kernels', folder)):
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__path__ = [path]
problem = getattr(importlib.import_module('_p.deploy.kernels.' + module),
                  function)()
print('PROBLEM ' + problem if problem else 'OK', flush=True)
'''


def _child_command(module: str, function: str) -> List[str]:
    return [
        sys.executable, '-c', _CHILD_CODE,
        osp.dirname(osp.abspath(__file__)), module, function
    ]


@functools.lru_cache(maxsize=None)
def child_problem(module: str, function: str) -> Optional[str]:
    """What the check ``module.function()`` found in a child, or None."""
    command = _child_command(module, function)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return (f'its check did not finish within {PROBE_TIMEOUT_S} s in a '
                'child process')
    except OSError as error:
        return f'its check could not start a child process ({error})'
    lines = result.stdout.strip().splitlines()
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f'signal {-result.returncode}'
        return f'its check crashed a child process ({name})'
    if result.returncode != 0 or not lines:
        last = (result.stderr.strip().splitlines() or ['no output'])[-1]
        return (f'its check exited with status {result.returncode} in a '
                f'child process: {last}')
    if lines[-1] == 'OK':
        return None
    return lines[-1].partition(' ')[2] or lines[-1]


def torch_checked() -> bool:
    """Whether this torch's major.minor is in :data:`CHECKED_TORCH`."""
    version = torch.__version__.split('+')[0]
    return '.'.join(version.split('.')[:2]) in CHECKED_TORCH


def route_problem(module: str, function: str) -> Optional[str]:
    """Why a private route is unusable here, or None: its check
    ``module.function`` in a child process, then here."""
    if not torch_checked() and 'torch_version' not in _logged:
        _logged.add('torch_version')
        MMLogger.get_current_instance().warning(
            f'torch {torch.__version__}: the private kernel routes were '
            f'checked on torch {", ".join(CHECKED_TORCH)}; each is probed '
            'here and used only if its check passes')
    problem = child_problem(module, function)
    if problem is not None:
        return problem
    return getattr(
        importlib.import_module(f'.{module}', __package__), function)()


@functools.lru_cache(maxsize=None)
def nnpack_problem() -> Optional[str]:
    """Why torch's NNPACK op is unusable here, or None (cached)."""
    return route_problem('nnpack_op', 'check_torch_op')


@functools.lru_cache(maxsize=None)
def c_api_problem() -> Optional[str]:
    """Why NNPACK's C entry point is unusable here, or None (cached)."""
    return route_problem('nnpack', 'check_c_api')


@functools.lru_cache(maxsize=None)
def int8_problem() -> Optional[str]:
    """Why oneDNN's int8 conv ops are unusable here, or None (cached)."""
    return route_problem('onednn_int8', 'check_qconv')


def usable(key: str, what: str, problem: Optional[str],
           consequence: str) -> bool:
    """``problem`` is None; otherwise logs, once per ``key`` and process,
    that ``what`` is not usable, why, and the ``consequence``."""
    if problem is None:
        return True
    if key not in _logged:
        _logged.add(key)
        MMLogger.get_current_instance().warning(
            f'{what} is not usable ({problem}): {consequence}')
    return False
