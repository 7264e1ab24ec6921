"""The on-disk cache of what was measured on this machine (auto's ranking,
Winograd's choices), so every process runs the same: one JSON file per
cache, merged under a lock on write; an unreadable file is empty."""
import contextlib
import json
import os
import os.path as osp
from typing import Dict, Iterator

from mmengine.logging import MMLogger

from ..atomic_io import atomic_write

try:
    import fcntl
except ImportError:  # not POSIX: writes are atomic, merges unlocked
    fcntl = None

CACHE_ENV = 'MMSEG_REPVGG_CACHE'


def cache_dir() -> str:
    """``$MMSEG_REPVGG_CACHE``, else ``~/.cache/mmseg_repvgg``."""
    return os.environ.get(CACHE_ENV) or osp.join(
        osp.expanduser('~'), '.cache', 'mmseg_repvgg')


def cache_path(name: str) -> str:
    """The file of cache ``name`` (e.g. ``'winograd.json'``)."""
    return osp.join(cache_dir(), name)


def read_cache(name: str, warn: bool = True) -> Dict:
    """The cache, ``{}`` if missing or unreadable (logged if ``warn``)."""
    path = cache_path(name)
    try:
        with open(path, encoding='utf-8') as file:
            data = json.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        if warn:
            MMLogger.get_current_instance().warning(
                f'ignoring the unreadable cache {path} ({err}); it is '
                'measured again and rewritten')
        return {}
    return data if isinstance(data, dict) else {}


def merge_entries(old: Dict, new: Dict) -> Dict:
    """``old`` updated by ``new``, nested dicts merged key by key."""
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = merge_entries(merged[key], value)
        merged[key] = value
    return merged


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive lock on ``path.lock``, released as the file closes."""
    if fcntl is None:
        yield
        return
    with open(f'{path}.lock', 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_cache(name: str, data: Dict) -> Dict:
    """Merge ``data`` into the cache on disk, under the lock; the result."""
    path = cache_path(name)
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        with _locked(path):
            merged = merge_entries(read_cache(name, warn=False), data)
            atomic_write(path, json.dumps(merged, indent=1, sort_keys=True))
    except OSError as err:  # a read-only home must not stop a deployment
        MMLogger.get_current_instance().warning(
            f'could not write the cache {path}: {err}')
        return data
    return merged
