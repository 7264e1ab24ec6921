"""The one on-disk cache of what was measured on this machine.

Measurements that decide what runs (auto's ranking of forms, Winograd's
per-layer kernel choices) are made once per machine and reused, so a
deployed model runs the same kernels in every process instead of
re-measuring under whatever load the machine has at that moment. Each
cache is one JSON file under :func:`cache_dir`, keyed by the caller (with
:meth:`~mmseg_repvgg.deploy.machine.Machine.fingerprint` in the key), and
written atomically. A missing file is an empty cache; an unreadable one is
ignored with one log line and rewritten, never an error.
"""
import json
import logging
import os
import os.path as osp
from typing import Dict

from mmengine.logging import print_log

from ..atomic_io import atomic_write

#: Environment variable naming the cache folder.
CACHE_ENV = 'MMSEG_REPVGG_CACHE'


def cache_dir() -> str:
    """``$MMSEG_REPVGG_CACHE``, else ``~/.cache/mmseg_repvgg``."""
    return os.environ.get(CACHE_ENV) or osp.join(
        osp.expanduser('~'), '.cache', 'mmseg_repvgg')


def cache_path(name: str) -> str:
    """The file of cache ``name`` (e.g. ``'winograd.json'``)."""
    return osp.join(cache_dir(), name)


def read_cache(name: str) -> Dict:
    """The cache's contents; ``{}`` when missing or unreadable."""
    path = cache_path(name)
    try:
        with open(path, encoding='utf-8') as file:
            data = json.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        print_log(
            f'ignoring the unreadable cache {path} ({err}); it is '
            'measured again and rewritten',
            logger='current',
            level=logging.WARNING)
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(name: str, data: Dict) -> None:
    """Replace the cache's contents atomically (no half-written file)."""
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        atomic_write(
            cache_path(name), json.dumps(data, indent=1, sort_keys=True))
    except OSError as err:  # a read-only home must not stop a deployment
        print_log(
            f'could not write the cache {cache_path(name)}: {err}',
            logger='current',
            level=logging.WARNING)
