"""The one config reader (a file, or ``mmseg::...``): every tool accepts the
same paths and fails with the same one-line error."""
import difflib
import glob
import inspect
import os.path as osp
from typing import List, Optional, Set

from mmengine.config import Config
from mmengine.hub import get_config

from .errors import ConfigError

CONFIGS_HINT = ('the configs are in configs/, e.g. '
                'configs/pspnet_repvgg_toy_cityscapes.py')
CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors', '.ckpt')


def _read(path: str) -> Config:
    if '::' in path:  # mmengine's package scheme, e.g. mmseg::pspnet/...
        try:
            return get_config(path)
        except Exception as err:  # mmengine raises several types here
            raise ConfigError(
                f'{path}: cannot load this config ({err})') from None
    if osp.isdir(path):
        found = sorted(glob.glob(osp.join(path, '*.py')))
        example = f'e.g. {found[0]}' if found else CONFIGS_HINT
        raise ConfigError(f'{path} is a directory; pass a config file in '
                          f'it ({example})')
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}; {CONFIGS_HINT}')
    if path.endswith(CHECKPOINT_SUFFIXES):
        raise ConfigError(
            f'{path} is a checkpoint, not a config; the config comes first '
            '(tools/test.py CONFIG CHECKPOINT)')
    try:
        return Config.fromfile(path)
    except Exception as err:  # a config is user input: any failure is one
        raise ConfigError(f'{path}: cannot load the config '
                          f'({type(err).__name__}: {err})') from err


def _arguments(cls) -> Optional[Set[str]]:
    """The keyword arguments ``cls(...)`` takes (with its bases' where it
    passes ``**kwargs`` on, mmseg style); None if any may be meant."""
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


def _first_missing(cfg: Config, parts: List[str]):
    """(node, path to it, index) of the first of ``parts`` cfg lacks."""
    node = dict(cfg.items())
    for i, part in enumerate(parts):
        if isinstance(node, (list, tuple)) and part.isdigit():
            if int(part) >= len(node):
                return None  # mmengine's merge names a bad index itself
            node = node[int(part)]
            continue
        if not isinstance(node, dict) or part.startswith('_'):
            return None
        if part not in node:
            return node, parts[:i], i
        node = node[part]
    return None


def _check_new_key(cfg: Config, key: str, value) -> None:
    """Refuse a ``--cfg-options`` key that is a typo (mmengine would merge it,
    and the Runner fail late); a key unlike any is added."""
    parts = key.split('.')
    found = _first_missing(cfg, parts)
    if found is None:
        return
    node, path, index = found
    part, where = parts[index], '.'.join(path)
    cls = names = None
    if path[:1] == ['model']:  # a model part's keys are its arguments
        from mmseg.registry import MODELS
        kind = node.get('type')
        cls = MODELS.get(kind) if isinstance(kind, str) else kind
        names = _arguments(cls) if inspect.isclass(cls) else None
    if names is not None and part in names:
        return
    candidates = sorted(names if names is not None else map(str, node))
    close = difflib.get_close_matches(
        part, candidates, n=1, cutoff=0.8 if names is None else 0.6)
    if names is None and not close:
        return  # a new key
    if names is None:
        what = f'{where or "the config"} has no key {part!r}'
    else:
        what = (f'{where} is a {cls.__name__}, which has no argument '
                f'{part!r}')
    hint = (f'did you mean {".".join(path + close + parts[index + 1:])}?'
            if close else f'{cls.__name__} takes {", ".join(candidates)}')
    raise ConfigError(f'--cfg-options {key}={value}: {what}; {hint}')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config and apply ``--cfg-options``, or raise ConfigError.

    Args:
        path (str): A config file, or ``package::path`` (``mmseg::...``).
        cfg_options (dict, optional): ``key=value`` overrides.
    """
    cfg = _read(path)
    if cfg_options:
        for key, value in cfg_options.items():
            _check_new_key(cfg, key, value)
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ConfigError(
                f'--cfg-options {cfg_options} does not fit {path}: '
                f'{err}') from err
    return cfg
