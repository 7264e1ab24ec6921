"""What the tools' argument parsers share: one-line usage errors,
``--cfg-options``, the int8 calibration options, and the options that name
deploy forms, each read by the one form parser."""
import argparse
from typing import Callable, Optional, Sequence

from mmengine.config import DictAction

from ..errors import ConfigError


class ToolParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, exit 2."""

    def error(self, message: str):
        self.exit(2, f'error: {message} (see --help)\n')


class CfgOptions(DictAction):
    """mmengine's ``DictAction`` whose malformed pairs are usage errors."""

    def __call__(self, parser, namespace, values, option_string=None):
        for pair in values:
            key, sep, value = pair.partition('=')
            if not (sep and key):
                fix = (f'did you mean {pair.replace(":", "=", 1)}?'
                       if ':' in pair else 'e.g. model.backbone.arch=B1')
                raise argparse.ArgumentError(
                    self, f'{pair!r} is not KEY=VALUE; {fix}')
            try:
                self._parse_iterable(value)
            except (AssertionError, ValueError) as err:
                raise argparse.ArgumentError(
                    self, f'{pair}: {err} (lists: key="[a,b]", no '
                    'spaces)') from None
        super().__call__(parser, namespace, values, option_string)


def add_cfg_options(parser: argparse.ArgumentParser) -> None:
    """Add mmseg's ``--cfg-options key=value ...``, checked when parsed."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptions,
        help='override config settings, key=value pairs merged into the '
        'config, e.g. model.backbone.init_cfg=None '
        'train_dataloader.batch_size=4 (lists: key="[a,b]"; no spaces)')


def add_calibration_args(parser: argparse.ArgumentParser,
                         help: str,
                         emulated: Optional[str] = None) -> None:
    """Add ``--calibration-images`` (int8 calibration) with ``help`` and,
    given its help, ``--allow-emulated``."""
    from ..deploy.calibration import CALIBRATION_IMAGES
    parser.add_argument(
        '--calibration-images',
        type=int,
        default=CALIBRATION_IMAGES,
        help=help)
    if emulated:
        parser.add_argument(
            '--allow-emulated', action='store_true', help=emulated)


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
