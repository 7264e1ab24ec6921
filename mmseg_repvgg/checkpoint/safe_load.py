"""Load mmengine's checkpoints with ``weights_only=True``, allowing exactly
the types it pickles; ``safe://PATH`` makes mmengine's own loading do so."""
import glob
import os
import os.path as osp
import pickle
import re
from typing import Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import find_latest_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version

from ..errors import CheckpointError
from .digest import check_digest

# A zip's end-of-central-directory record lies in its last 64 KiB + 22 bytes.
_ZIP_TAIL = 65557


def _numpy_globals():
    """numpy objects pickled arrays, dtypes and scalars refer to (under
    ``numpy.core`` in older files, ``numpy._core`` in newer ones)."""
    from numpy._core import multiarray
    allowed = [np.ndarray, np.dtype]
    for name in ('_reconstruct', 'scalar'):
        func = getattr(multiarray, name)
        allowed += [(func, f'numpy.core.multiarray.{name}'),
                    (func, f'numpy._core.multiarray.{name}')]
    # dtype classes (numpy.dtypes.Float64DType, ...) appear in newer pickles.
    allowed += [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG']
    return allowed


def _history_buffer_method(owner, name):
    """``getattr`` while unpickling, of HistoryBuffer's statistics only."""
    # Named: HistoryBuffer registers them only with its first instance.
    allowed = {'min', 'max', 'current', 'mean'}
    allowed.update(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in allowed:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not on the allow-list')


# The non-tensor types in what mmengine's Runner saves.
MMENGINE_SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_method, 'builtins.getattr'),
    (_history_buffer_method, '__builtin__.getattr'),
] + _numpy_globals()


def _unsafe_globals(filename, message: str) -> str:
    """The globals of ``filename`` outside the allow-list, for the message."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint: torch's message names one
        names = re.findall(r'GLOBAL ([\w.]+)', message)
    allowed = {
        entry[1] if isinstance(entry, tuple) else
        f'{entry.__module__}.{entry.__qualname__}'
        for entry in MMENGINE_SAFE_GLOBALS
    }
    return ', '.join(n for n in names if n not in allowed) or 'objects'


def _cause(err: Exception) -> str:
    """The gist of a load error: its type and first sentence."""
    text = str(err).strip()
    opcode = re.search(r'Unsupported operand \d+', text)
    if opcode:  # torch's weights-only message buries it after a paragraph
        return f'unpickling failed: {opcode.group(0)}'
    first = text.splitlines()[0].split('. ')[0] if text else ''
    return f'{type(err).__name__}: {first}' if first else type(err).__name__


def refuse_directory(path) -> None:
    """Refuse a directory given as a checkpoint, naming its newest one."""
    if not isinstance(path, (str, os.PathLike)) or not osp.isdir(path):
        return
    found = glob.glob(osp.join(path, '*.pth'))
    fix = (f'pass a checkpoint file in it, e.g. {max(found, key=osp.getmtime)}'
           if found else 'pass a checkpoint file (it holds no .pth file)')
    raise CheckpointError(f'{path} is a directory; {fix}')


def safe_torch_load(filename, map_location='cpu'):
    """``torch.load`` (of a path or file object) with ``weights_only=True``
    and mmengine's allow-list; a missing, corrupt, unsafe or altered file
    raises CheckpointError."""
    refuse_directory(filename)
    try:
        with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
            checkpoint = torch.load(
                filename, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(
            f'{filename}: checkpoint file not found; check the path') from None
    except pickle.UnpicklingError as err:
        # A weights-only failure is a refusal, unless the bytes were garbage.
        if ('Weights only load failed' not in str(err)
                or 'Unsupported operand' in str(err)):
            raise CheckpointError(
                f'{filename}: not a readable PyTorch checkpoint (corrupt: '
                f'{_cause(err)}); re-download or re-save it') from None
        found = _unsafe_globals(filename, str(err))
        raise CheckpointError(
            f'{filename}: refused to load: it holds {found}'
            ' outside the allow-list of tensors and the types mmengine saves. '
            'Checkpoints are untrusted input and load with weights_only=True; '
            'use a checkpoint from a source you trust, saved with tensors '
            'only') from None
    except Exception as err:  # a damaged file can fail in any unpickler op
        cause = _damaged_start(filename) or (
            f'truncated or corrupt: {_cause(err)}')
        raise CheckpointError(
            f'{filename}: not a readable PyTorch checkpoint ({cause}); '
            're-download or re-save it') from None
    check_digest(checkpoint, filename)
    return checkpoint


def _damaged_start(filename) -> Optional[str]:
    """Why a zip archive (torch's format) fails: its end is intact, its
    start is not (torch then takes it for the legacy .tar format)."""
    try:
        with open(filename, 'rb') as f:
            head = f.read(4)
            f.seek(max(0, os.fstat(f.fileno()).st_size - _ZIP_TAIL))
            tail = f.read()
    except (OSError, TypeError):  # a file object or an unreadable path
        return None
    if head != b'PK\x03\x04' and b'PK\x05\x06' in tail:
        return ('a corrupt zip archive: its end is intact, its first bytes '
                'are not a zip header')
    return None


SAFE_SCHEME = 'safe://'


@CheckpointLoader.register_scheme(prefixes=SAFE_SCHEME)
def load_from_safe(filename: str, map_location=None):
    """mmengine's loader for ``safe://PATH``."""
    return safe_torch_load(filename[len(SAFE_SCHEME):], map_location)


def needs_safe_loading() -> bool:
    """Whether torch's weights-only default refuses mmengine's own loads."""
    return digit_version(torch.__version__) >= digit_version('2.6.0')


def route_checkpoint_loading(cfg) -> Optional[str]:
    """Point ``cfg.load_from`` (or, resuming without one, the latest
    checkpoint of ``cfg.work_dir``) at ``safe://PATH`` and return it, or None
    if unchanged; remote paths stay mmengine's."""
    if not needs_safe_loading():
        return None
    load_from = cfg.get('load_from')
    if not load_from and cfg.get('resume'):
        load_from = find_latest_checkpoint(cfg.work_dir)
    if not load_from or '://' in load_from:
        return None
    cfg.load_from = SAFE_SCHEME + load_from
    return cfg.load_from
