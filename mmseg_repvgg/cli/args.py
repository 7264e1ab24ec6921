"""What the tools' argument parsers share: one-line usage errors, and the
options that name deploy forms, each read by the one form parser."""
import argparse
from typing import Callable, Optional, Sequence

from ..errors import ConfigError


class ToolParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, exit 2."""

    def error(self, message: str):
        self.exit(2, f'error: {message} (see --help)\n')


def _form_spec(auto: bool) -> Callable[[str], str]:
    """argparse ``type`` checking one form spec with the form parser."""

    def form(spec: str) -> str:
        # The parser only when a tool parses a form (train.py never).
        from ..deploy.forms import AUTO, parse_form
        if auto and spec == AUTO:
            return spec
        try:
            return parse_form(spec).name
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return form


def add_forms_argument(parser: argparse.ArgumentParser,
                       flag: str,
                       default: Optional[Sequence[str]] = None,
                       *,
                       many: bool = True,
                       empty: bool = False,
                       deploy: bool = False,
                       help: str = '') -> None:
    """Add an option that takes form names, each checked when parsed.

    Args:
        parser (ArgumentParser): The tool's parser.
        flag (str): The option, e.g. ``--forms``.
        default (str | Sequence[str], optional): Its default.
        many (bool): Several names (else exactly one).
        empty (bool): With ``many``, the option alone means none.
        deploy (bool): Also take ``auto`` (what ``deploy_model`` takes).
        help (str): The option's help.
    """
    nargs = ('*' if empty else '+') if many else None
    parser.add_argument(
        flag,
        nargs=nargs,
        default=default,
        type=_form_spec(deploy),
        metavar='FORM',
        help=help)
