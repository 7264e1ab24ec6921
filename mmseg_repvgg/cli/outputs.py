"""The tools' output paths, refused before any work if they could not be
written; nothing is created, so a failure leaves no empty directory."""
import os
import os.path as osp

from ..errors import ConfigError


def _check_creatable(path: str, what: str) -> None:
    """Everything ``path`` needs above it can be created or written."""
    ancestor = osp.dirname(osp.abspath(path))
    while not osp.exists(ancestor):
        ancestor = osp.dirname(ancestor)
    if not osp.isdir(ancestor):
        raise ConfigError(
            f'{what} {path}: {ancestor} is a file, not a directory; pass a '
            'path whose parents are directories')
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f'{what} {path}: {ancestor} is not writable; pass '
                          'a path you can write to')


def check_output_dir(path: str, what: str) -> None:
    """Refuse an output directory (created later, by whoever writes first)
    that could not be written; ``what`` names it (``--out-dir``)."""
    if not osp.exists(path):
        _check_creatable(path, what)
    elif not osp.isdir(path):
        raise ConfigError(f'{what} {path} is a file, not a directory; pass '
                          'a directory (it is created if missing)')
    elif not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f'{what} {path} is not writable; pass a '
                          'directory you can write to')


def check_output_file(path: str, what: str, example: str) -> None:
    """Refuse an output file (replaced if it exists) that could not be
    written; ``what`` names it, ``example`` is the file name suggested in a
    directory given instead."""
    if osp.isdir(path) or path.endswith(('/', os.sep)):
        raise ConfigError(
            f'{what} {path} is a directory; pass a file name, e.g. '
            f'{osp.join(path, example)}')
    _check_creatable(path, what)
