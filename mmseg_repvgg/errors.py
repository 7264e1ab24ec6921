"""Errors caused by the user's input, each naming the problem and the fix."""


class UserError(Exception):
    """Bad input: a message that names the problem and the fix."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot or must not be loaded."""


class ConfigError(UserError, ValueError):
    """A config or argument that cannot work."""


class DatasetError(UserError, ValueError):
    """A dataset that is missing or malformed."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, after the tool kept what it had finished."""
