"""Crash-safe writes (temp file in the same directory, fsync, atomic
rename), and ``'local_atomic'``, a file backend registered in mmengine's,
so that mmengine's checkpoint saving (which truncates the old file first)
writes atomically through ``AtomicCheckpointHook``. Neither the standard
library, torch nor mmengine offers such a write. Imports only mmengine.
"""
import contextlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterator, Union

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend

PathLike = Union[str, os.PathLike]


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask).

    ``mkstemp`` creates 0o600 files; a checkpoint should stay readable by
    whoever could read one written by ``open()``.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(filename: PathLike, make_dirs: bool) -> Iterator[str]:
    """The temporary file behind :func:`atomic_open` and :func:`atomic_path`.

    Yields a path beside ``filename``; when the block succeeds the file
    gets ``open()``'s default mode, is synced to disk and renamed over
    ``filename`` (then the directory entry is synced); when it raises, the
    file is removed and ``filename`` is left as it was.
    """
    filename = os.fspath(filename)
    directory = osp.dirname(osp.abspath(filename))
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=f'.{osp.basename(filename)}.', suffix='.tmp')
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _default_file_mode())
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


@contextlib.contextmanager
def atomic_open(filename: PathLike, mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary file that replaces ``filename`` when closed cleanly.

    The temporary file (``.NAME.XXXX.tmp``, hidden) lies in the directory of
    ``filename``, so the final :func:`os.replace` is a rename within one
    filesystem. If the block raises, the temporary file is removed and
    ``filename`` is left as it was.

    Args:
        filename (str | PathLike): The destination; its directory must
            exist.
        mode (str): ``'wb'`` or ``'w'``. Defaults to ``'wb'``.

    Yields:
        file object: Write the whole content to it.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f'atomic_open writes whole files; got mode {mode!r}')
    with _replacing(filename, make_dirs=False) as tmp, open(tmp, mode) as f:
        yield f


@contextlib.contextmanager
def atomic_path(filename: PathLike) -> Iterator[str]:
    """A temporary path that replaces ``filename`` when the block succeeds.

    For writers that take a path rather than a file object (``torch.save``
    with a verification step, the ONNX exporter). Same guarantees as
    :func:`atomic_open`; the directory is created if missing.

    Args:
        filename (str | PathLike): The destination.

    Yields:
        str: Where to write the whole content.
    """
    with _replacing(filename, make_dirs=True) as tmp:
        yield tmp


def atomic_write(filename: PathLike, data: Union[bytes, str]) -> None:
    """Write ``data`` (bytes or text) to ``filename`` atomically.

    Args:
        filename (str | PathLike): The destination; its directory must
            exist.
        data (bytes | str): The whole new content.
    """
    with atomic_open(filename, 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data)


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend whose writes are atomic.

    Select it with ``backend_args=dict(backend='local_atomic')`` wherever
    mmengine takes ``backend_args`` (``save_checkpoint``, ``CheckpointHook``,
    ``mmengine.dump``).
    """

    def put(self, obj: bytes, filepath: PathLike) -> None:
        """Write bytes to ``filepath`` (creating its directory) atomically.

        Args:
            obj (bytes): The whole content.
            filepath (str | PathLike): The destination.
        """
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        atomic_write(filepath, obj)

    def put_text(self,
                 obj: str,
                 filepath: PathLike,
                 encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically.

        Args:
            obj (str): The whole content.
            filepath (str | PathLike): The destination.
            encoding (str): Defaults to 'utf-8'.
        """
        self.put(obj.encode(encoding), filepath)


#: ``backend_args`` that select :class:`AtomicLocalBackend`.
ATOMIC_BACKEND_ARGS = dict(backend='local_atomic')
