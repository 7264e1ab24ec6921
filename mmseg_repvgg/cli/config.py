"""Read a config: a file, or one from a package's configs (``mmseg::...``).

The one config reader of the package: the tools, the deploy code and the
benchmark all go through :func:`load_config`, so each accepts the same
paths and fails with the same one-line error.
"""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.hub import get_config

from ..errors import ConfigError

CONFIGS_HINT = ('the configs are in configs/, e.g. '
                'configs/pspnet_repvgg_toy_cityscapes.py')


def _read(path: str) -> Config:
    if '::' in path:  # mmengine's package scheme, e.g. mmseg::pspnet/...
        try:
            return get_config(path)
        except Exception as err:  # mmengine raises several types here
            raise ConfigError(
                f'{path}: cannot load this config ({err})') from None
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}; {CONFIGS_HINT}')
    try:
        return Config.fromfile(path)
    except Exception as err:  # a config is user input: any failure is one
        raise ConfigError(f'{path}: cannot load the config '
                          f'({type(err).__name__}: {err})') from err


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config and apply ``--cfg-options``.

    Args:
        path (str): A config file, or ``package::path`` in an OpenMMLab
            package's configs (e.g. ``mmseg::pspnet/pspnet_r50-d8_...``).
        cfg_options (dict, optional): ``key=value`` overrides.

    Raises:
        ConfigError: The file is missing or cannot be parsed, or an override
            does not fit the config.
    """
    cfg = _read(path)
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ConfigError(
                f'--cfg-options {cfg_options} does not fit {path}: '
                f'{err}') from err
    return cfg
