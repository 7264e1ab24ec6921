"""What the tools' argument parsers share: one-line usage errors, and the
options that name deploy forms (``--deploy-form``, ``--forms``, ...)."""
import argparse
from typing import Callable, Optional, Sequence

from ..errors import ConfigError


class ToolParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one ``error:`` line, exit 2.

    argparse prints its usage block first, which pushes the cause below a
    screenful of options.
    """

    def error(self, message: str):
        self.exit(2, f'error: {message} (see --help)\n')


def _form_name(deploy: bool) -> Callable[[str], str]:
    """argparse ``type`` checking one form name against the catalogue."""

    def form(name: str) -> str:
        # The catalogue only when a tool parses a form (train.py never).
        from ..benchmark.forms import ALL_FORMS
        from ..deploy.forms import get_form
        if deploy:
            if name != 'auto':
                try:
                    get_form(name)
                except ConfigError as err:
                    raise argparse.ArgumentTypeError(str(err)) from None
        elif name not in ALL_FORMS:  # get_form's list would offer auto
            raise argparse.ArgumentTypeError(
                f'unknown form {name!r}; choose from {", ".join(ALL_FORMS)}')
        return name

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
        many (bool): Several names (else exactly one). Defaults to True.
        empty (bool): With ``many``, the option alone means none.
        deploy (bool): Shippable forms and ``auto`` only (what
            ``deploy_model`` takes); else every form, the benchmark's
            ablations included. Defaults to False.
        help (str): The option's help.
    """
    nargs = ('*' if empty else '+') if many else None
    parser.add_argument(
        flag,
        nargs=nargs,
        default=default,
        type=_form_name(deploy),
        metavar='FORM',
        help=help)
