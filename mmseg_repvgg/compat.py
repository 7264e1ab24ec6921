"""The few patches the OpenMMLab stack needs on current torch and numpy.

Each patch is applied once, on ``import mmseg_repvgg``, and each has a test
that fails without it (tests/test_compat.py):

* Checkpoints. torch >= 2.6 loads with ``weights_only=True`` by default, and
  mmengine 0.10.7 pickles a ``HistoryBuffer`` and numpy arrays/scalars into
  every checkpoint it saves, so resume, ``load_from`` and test all fail. We
  do **not** turn the safety off: mmengine's local loader is replaced by
  :func:`safe_torch_load`, which keeps ``weights_only=True`` and allows
  exactly the types mmengine writes (:data:`MMENGINE_SAFE_GLOBALS`). Anything
  else is refused with a message naming the file and the offending types.
* Checkpoint saving. mmengine writes checkpoints and ``last_checkpoint``
  in place; :mod:`mmseg_repvgg.atomic_io` makes them atomic (tests in
  tests/test_atomic_save.py).
* CityscapesMetric. cityscapesscripts' pixel-level evaluation calls
  ``np.in1d``, which numpy 2 removed; that module alone gets a numpy whose
  ``in1d`` is ``np.isin`` (numpy itself is left untouched).
"""
import pickle
import re
import types

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from .atomic_io import patch_mmengine_checkpoint_saving
from .errors import CheckpointError


def _numpy_globals():
    """numpy objects that pickled arrays, dtypes and scalars refer to.

    numpy 2 moved ``numpy.core`` to ``numpy._core``; files written under
    numpy 1 still name the old path, so both names are allowed.
    """
    from numpy._core import multiarray
    allowed = [np.ndarray, np.dtype]
    for name in ('_reconstruct', 'scalar'):
        func = getattr(multiarray, name)
        allowed += [(func, f'numpy.core.multiarray.{name}'),
                    (func, f'numpy._core.multiarray.{name}')]
    # dtype classes (numpy.dtypes.Float64DType, ...) appear in numpy 2 pickles.
    allowed += [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG']
    return allowed


def _history_buffer_method(owner, name):
    """Stands in for ``getattr`` while unpickling, for one use only.

    A HistoryBuffer pickles its statistics functions as
    ``getattr(HistoryBuffer, 'min')``. Allowing ``getattr`` itself would let
    a file reach any attribute of any object, so this allows exactly those.
    """
    # The built-in four are listed by name: HistoryBuffer registers them in
    # _statistics_methods only when the first buffer is created, which in a
    # fresh process (tools/test.py) comes after the checkpoint loads.
    allowed = {'min', 'max', 'current', 'mean'}
    allowed.update(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in allowed:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not on the allow-list')


#: The exact non-tensor types found in checkpoints that mmengine's Runner
#: saves (``message_hub`` holds HistoryBuffers of numpy arrays, and numpy
#: scalars sit in ``meta`` and ``runtime_info``).
MMENGINE_SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_method, 'builtins.getattr'),
    (_history_buffer_method, '__builtin__.getattr'),
] + _numpy_globals()


def _allowed_names() -> set:
    """The ``module.name`` of every entry of the allow-list."""
    names = set()
    for entry in MMENGINE_SAFE_GLOBALS:
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f'{entry.__module__}.{entry.__qualname__}')
    return names


def _unsafe_globals(filename, message: str) -> str:
    """The globals of ``filename`` outside the allow-list, for the message.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint: torch's message names one
        names = re.findall(r'GLOBAL ([\w.]+)', message)
    allowed = _allowed_names()
    return ', '.join(n for n in names if n not in allowed) or 'objects'


def _cause(err: Exception) -> str:
    """The gist of a load error: its type and first sentence."""
    text = str(err).strip()
    opcode = re.search(r'Unsupported operand \d+', text)
    if opcode:  # torch's weights-only message buries it after a paragraph
        return f'unpickling failed: {opcode.group(0)}'
    first = text.splitlines()[0].split('. ')[0] if text else ''
    return f'{type(err).__name__}: {first}' if first else type(err).__name__


def safe_torch_load(filename, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and mmengine's allow-list.

    Args:
        filename (str | PathLike | file-like): The checkpoint.
        map_location: Passed to :func:`torch.load`. Defaults to 'cpu'.

    Raises:
        CheckpointError: The file is missing, truncated or corrupt, or holds
            objects outside :data:`MMENGINE_SAFE_GLOBALS`. The payload of a
            malicious pickle is never executed.
    """
    try:
        with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
            return torch.load(
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
        raise CheckpointError(
            f'{filename}: not a readable PyTorch checkpoint (truncated or '
            f'corrupt: {_cause(err)}); re-download or re-save '
            'it') from None


def _patch_mmengine_checkpoint_loading() -> None:
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        """Replaces mmengine's loader: weights_only with an allow-list."""
        return safe_torch_load(filename, map_location=map_location)


class _NumpyWithIn1d(types.ModuleType):
    """numpy as it was before 2.0 for one module: ``in1d`` is ``isin``."""

    in1d = staticmethod(np.isin)

    def __getattr__(self, name):
        return getattr(np, name)


def _patch_cityscapes_in1d() -> None:
    if hasattr(np, 'in1d'):
        return
    try:
        from cityscapesscripts.evaluation import \
            evalPixelLevelSemanticLabeling as cs_eval
    except ImportError:  # cityscapesscripts is optional for mmseg
        return
    cs_eval.np = _NumpyWithIn1d('numpy')


_applied = False


def apply_patches() -> None:
    """Apply every patch once; safe to call again."""
    global _applied
    if _applied:
        return
    _patch_mmengine_checkpoint_loading()
    patch_mmengine_checkpoint_saving()
    _patch_cityscapes_in1d()
    _applied = True
