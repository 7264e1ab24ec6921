"""Errors caused by the user's input, and how the tools report them.

Every tool in ``tools/`` runs its ``main`` through :func:`run_cli`: a
:class:`UserError` becomes one line on stderr (cause and fix) and exit
status 2, never a traceback wall. Anything else is a bug and keeps its
traceback.
"""
import sys


class UserError(Exception):
    """Bad input: a message that names the problem and the fix."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot or must not be loaded."""


class ConfigError(UserError, ValueError):
    """A config or argument that cannot work."""


class DatasetError(UserError, ValueError):
    """A dataset that is missing or malformed."""


def run_cli(main, argv=None) -> int:
    """Run a tool's ``main(argv)`` and turn a UserError into exit 2."""
    try:
        return main(argv) or 0
    except UserError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
