"""Errors caused by the user's input, and how the tools report them.

Every tool in ``tools/`` runs its ``main`` through :func:`run_cli`: a
:class:`UserError` becomes one line on stderr (cause and fix) and exit
status 2, Ctrl-C one line and exit status 130 (what was finished stays:
every output is written atomically), never a traceback wall. Anything else
is a bug and keeps its traceback.
"""
import sys

#: Exit status of a tool stopped by Ctrl-C (128 + SIGINT, as shells use).
INTERRUPTED = 130


class UserError(Exception):
    """Bad input: a message that names the problem and the fix."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot or must not be loaded."""


class ConfigError(UserError, ValueError):
    """A config or argument that cannot work."""


class DatasetError(UserError, ValueError):
    """A dataset that is missing or malformed."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, after the tool kept what it had finished (the message says
    what and where)."""


def run_cli(main, argv=None) -> int:
    """Run a tool's ``main(argv)``: a UserError is exit 2, Ctrl-C exit 130.

    The third-party lines that say nothing to the user are filtered first
    (:mod:`mmseg_repvgg.cli.noise`), so a failure's first line is its
    ``error:`` line.
    """
    # Imported here: this module is the package's bottom layer, and the
    # filters belong to the tools' entry, not to library users' imports.
    from .cli.noise import filter_third_party_noise
    filter_third_party_noise()
    try:
        return main(argv) or 0
    except UserError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        kept = f'; {err}' if isinstance(err, Interrupted) else ''
        print(f'interrupted (Ctrl-C){kept}', file=sys.stderr)
        return INTERRUPTED
