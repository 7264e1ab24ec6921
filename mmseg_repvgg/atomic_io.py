"""Crash-safe file writes, and the patch that makes mmengine's saves use them.

A file that is an output (a checkpoint, the ``last_checkpoint`` pointer, a
converted or deploy checkpoint) is written under a temporary name in its
own directory, flushed to disk (``fsync``) and renamed over the destination
with :func:`os.replace`, which POSIX makes atomic. A kill, a full disk or an
exception at any moment leaves either the old file or the new one, never a
half-written one. Neither the standard library, torch nor mmengine offers
such a write, hence the few lines here.

mmengine 0.10.7 writes in place: ``save_checkpoint`` ends in
``LocalBackend.put`` (``open(filename, 'wb')``, which truncates the old file
first), ``CheckpointHook`` deletes the oldest kept checkpoint *before*
saving the new one (``max_keep_ckpts``) and rewrites ``last_checkpoint``
with ``open(..., 'w')``. :func:`patch_mmengine_checkpoint_saving` (applied on
``import mmseg_repvgg``) makes all three safe. This module sits at the bottom
of the package (``compat`` calls it), so it imports only mmengine and torch.
"""
import contextlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterator, Union

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook

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


def _atomic_put(self, obj: bytes, filepath: PathLike) -> None:
    """``LocalBackend.put`` (creates the directory), written atomically."""
    os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
    atomic_write(filepath, obj)


def _atomic_put_text(self,
                     obj: str,
                     filepath: PathLike,
                     encoding: str = 'utf-8') -> None:
    """``LocalBackend.put_text``, written atomically."""
    _atomic_put(self, obj.encode(encoding), filepath)


def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
    """``CheckpointHook._save_checkpoint_with_step`` in a crash-safe order.

    mmengine 0.10.7's version (mirrored here, same bookkeeping) removes the
    checkpoint that ``max_keep_ckpts`` drops *before* saving the new one
    and rewrites ``last_checkpoint`` in place; a kill in between leaves no
    checkpoint, or a pointer to nothing, to resume from. Here the new
    checkpoint is saved (atomically, via ``LocalBackend.put``) first, then
    the pointer is replaced atomically, and only then is the old file
    removed.
    """
    stale = []
    if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
        # _save_checkpoint and _save_best_checkpoint may both save a step.
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            stale.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))

    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)
    runner.save_checkpoint(
        self.out_dir,
        ckpt_filename,
        self.file_client_args,
        save_optimizer=self.save_optimizer,
        save_param_scheduler=self.save_param_scheduler,
        meta=meta,
        by_epoch=self.by_epoch,
        backend_args=self.backend_args,
        **self.args)

    # Model-parallel strategies save from every rank; bookkeeping is rank 0.
    if not is_main_process():
        return
    atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
    for old_step in stale:
        path = self.file_backend.join_path(self.out_dir,
                                           self.filename_tmpl.format(old_step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed saves directories
            self.file_backend.rmtree(path)


def patch_mmengine_checkpoint_saving() -> None:
    """Make mmengine's local saves atomic and CheckpointHook crash-safe.

    Patching ``LocalBackend.put`` covers every local caller at once:
    ``mmengine.runner.save_checkpoint`` (which the Runner, the strategies
    and ``CheckpointHook._publish_model`` each import under their own name)
    and ``mmengine.fileio.dump`` to a path. Safe to call again.
    """
    LocalBackend.put = _atomic_put
    LocalBackend.put_text = _atomic_put_text
    CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step
