"""Read a config: a file, or one from a package's configs (``mmseg::...``).

The one config reader of the package: the tools, the deploy code and the
benchmark all go through :func:`load_config`, so each accepts the same
paths and fails with the same one-line error.
"""
import difflib
import inspect
import os.path as osp
from typing import Optional, Set

from mmengine.config import Config
from mmengine.hub import get_config

from .errors import ConfigError

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


def _arguments(cls) -> Optional[Set[str]]:
    """The keyword arguments ``cls(...)`` takes; None if any may be meant.

    A class that takes ``**kwargs`` passes them on to its base (the mmseg
    and mmcv style), so the bases' arguments count too.
    """
    names = set()
    for klass in inspect.getmro(cls):
        if '__init__' not in vars(klass):
            continue
        try:
            params = inspect.signature(klass.__init__).parameters.values()
        except (TypeError, ValueError):  # a C type: not ours to judge
            return None
        names |= {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        if all(p.kind is not p.VAR_KEYWORD for p in params):
            return names - {'self'}
    return None


def _check_new_model_key(cfg: Config, key: str, value) -> None:
    """Refuse a ``--cfg-options`` key that no model part would take.

    mmengine merges any key; a typo (``model.backbone.archh``) then fails
    as a TypeError deep in the Runner's model build, after the config
    dump. Keys the config already has, and parts of unregistered or
    ``**kwargs``-only types, are let through.
    """
    from mmseg.registry import MODELS
    parts = key.split('.')
    node, where = cfg.get('model'), 'model'
    for part in parts[1:]:
        if not isinstance(node, dict) or part.startswith('_'):
            return
        if part not in node:
            break
        node, where = node[part], f'{where}.{part}'
    else:
        return
    kind = node.get('type')
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    names = _arguments(cls) if inspect.isclass(cls) else None
    if names is None or part in names:
        return
    close = difflib.get_close_matches(part, sorted(names), n=1)
    hint = f'did you mean {where}.{close[0]}?' if close else (
        f'{cls.__name__} takes {", ".join(sorted(names))}')
    raise ConfigError(f'--cfg-options {key}={value}: {where} is a '
                      f'{cls.__name__}, which has no argument {part!r}; '
                      f'{hint}')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config and apply ``--cfg-options``.

    Args:
        path (str): A config file, or ``package::path`` in an OpenMMLab
            package's configs (e.g. ``mmseg::pspnet/pspnet_r50-d8_...``).
        cfg_options (dict, optional): ``key=value`` overrides.

    Raises:
        ConfigError: The file is missing or cannot be parsed, or an override
            does not fit the config (or names no argument of a model part).
    """
    cfg = _read(path)
    if cfg_options:
        for key, value in cfg_options.items():
            if key.startswith('model.'):
                _check_new_model_key(cfg, key, value)
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ConfigError(
                f'--cfg-options {cfg_options} does not fit {path}: '
                f'{err}') from err
    return cfg
