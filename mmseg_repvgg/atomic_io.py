"""Crash-safe writes (temporary file, fsync, rename), which neither torch nor
mmengine offers, also as the mmengine file backend ``'local_atomic'``."""
import contextlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterator, Union

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def _replacing(filename: PathLike, make_dirs: bool) -> Iterator[str]:
    """A temporary path beside ``filename``, renamed over it on success."""
    filename = os.fspath(filename)
    directory = osp.dirname(osp.abspath(filename))
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=f'.{osp.basename(filename)}.', suffix='.tmp')
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)  # open()'s mode, not mkstemp's 0o600
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    # The rename made durable; Windows cannot open a directory, and some
    # filesystems refuse its fsync.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(filename: PathLike, mode: str = 'wb') -> Iterator[IO]:
    """A hidden temporary file (``mode`` ``'wb'`` or ``'w'``) for the whole
    content, replacing ``filename`` (in an existing directory) when the
    block succeeds; if it raises, ``filename`` is left as it was."""
    if mode not in ('w', 'wb'):
        raise ValueError(f'atomic_open writes whole files; got mode {mode!r}')
    with _replacing(filename, make_dirs=False) as tmp, open(tmp, mode) as f:
        yield f


@contextlib.contextmanager
def atomic_path(filename: PathLike) -> Iterator[str]:
    """:func:`atomic_open` for writers that take a path (``torch.save``, the
    ONNX exporter): where to write the whole content; the directory is
    created if missing."""
    with _replacing(filename, make_dirs=True) as tmp:
        yield tmp


def atomic_write(filename: PathLike, data: Union[bytes, str]) -> None:
    """Write ``data`` (bytes or text) to ``filename`` (in an existing
    directory) atomically."""
    with atomic_open(filename, 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data)


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend, atomic (``ATOMIC_BACKEND_ARGS``)."""

    def put(self, obj: bytes, filepath: PathLike) -> None:
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        atomic_write(filepath, obj)

    def put_text(self,
                 obj: str,
                 filepath: PathLike,
                 encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


ATOMIC_BACKEND_ARGS = dict(backend='local_atomic')
