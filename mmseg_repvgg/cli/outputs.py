"""The tools' output paths, checked before any work.

A path a tool could not write (a file path that is a directory, a directory
path that is a file, a parent that is a file or read-only) is refused in
one line before anything is loaded. Nothing is created here: the Runner,
mmseg's metric and the atomic writers make the directories when they first
write into them, so a failure before the first output leaves no empty
directory behind.
"""
import os
import os.path as osp

from ..errors import ConfigError


def _nearest_existing(path: str) -> str:
    """``path`` itself if it exists, else its nearest existing ancestor."""
    path = osp.abspath(path)
    while not osp.exists(path):
        path = osp.dirname(path)
    return path


def _check_creatable(path: str, what: str) -> None:
    """Everything ``path`` needs above it can be created or written."""
    ancestor = _nearest_existing(osp.dirname(osp.abspath(path)))
    if not osp.isdir(ancestor):
        raise ConfigError(
            f'{what} {path}: {ancestor} is a file, not a directory; pass a '
            'path whose parents are directories')
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f'{what} {path}: {ancestor} is not writable; pass '
                          'a path you can write to')


def check_output_dir(path: str, what: str) -> None:
    """Refuse an output directory that could not be written.

    Args:
        path (str): The directory; created later, by whoever writes first.
        what (str): The option or argument, for the message (``--out-dir``).

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or is not
            writable.
    """
    if osp.exists(path) and not osp.isdir(path):
        raise ConfigError(f'{what} {path} is a file, not a directory; pass '
                          'a directory (it is created if missing)')
    if osp.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f'{what} {path} is not writable; pass a '
                              'directory you can write to')
        return
    _check_creatable(path, what)


def check_output_file(path: str, what: str, example: str) -> None:
    """Refuse an output file that could not be written.

    Args:
        path (str): The file to write (replaced if it exists).
        what (str): The option or argument, for the message.
        example (str): A file name to suggest inside a directory given by
            mistake (``model.onnx``).

    Raises:
        ConfigError: ``path`` is a directory (or ends with a separator),
            lies under a file, or its directory is not writable.
    """
    if osp.isdir(path) or path.endswith(('/', os.sep)):
        raise ConfigError(
            f'{what} {path} is a directory; pass a file name, e.g. '
            f'{osp.join(path, example)}')
    _check_creatable(path, what)
