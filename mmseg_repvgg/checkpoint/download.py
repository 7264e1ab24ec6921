"""Pretrained weights by URL or name (``mmpretrain://repvgg-B2``), fetched
once into torch's hub cache and kept only once read safely."""
import http.client
import os
import os.path as osp
import re
import uuid
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info

from ..errors import CheckpointError

MMPRETRAIN_SCHEME = 'mmpretrain://'
TIMM_SCHEME = 'timm://'
SCHEMES = ('http://', 'https://', MMPRETRAIN_SCHEME, TIMM_SCHEME)

MMPRETRAIN_URL = 'https://download.openmmlab.com/mmclassification/v0/repvgg/'
# mmpretrain's configs/repvgg/README.md: arch -> (file, published top-1).
MMPRETRAIN_FILES = {
    'A0': ('repvgg-A0_8xb32_in1k_20221213-60ae8e23.pth', 72.37),
    'A1': ('repvgg-A1_8xb32_in1k_20221213-f81bf3df.pth', 74.23),
    'A2': ('repvgg-A2_8xb32_in1k_20221213-a8767caf.pth', 76.49),
    'B0': ('repvgg-B0_8xb32_in1k_20221213-5091ecc7.pth', 75.27),
    'B1': ('repvgg-B1_8xb32_in1k_20221213-d17c45e7.pth', 78.19),
    'B1g2': ('repvgg-B1g2_8xb32_in1k_20221213-ae6428fd.pth', 77.87),
    'B1g4': ('repvgg-B1g4_8xb32_in1k_20221213-a7a4aaea.pth', 77.81),
    'B2': ('repvgg-B2_8xb32_in1k_20221213-d8b420ef.pth', 78.58),
    'B2g4': ('repvgg-B2g4_8xb32_in1k_20221213-0c1990eb.pth', 79.44),
    'B3': ('repvgg-B3_8xb32_in1k_20221213-927a329a.pth', 80.58),
    'B3g4': ('repvgg-B3g4_8xb32_in1k_20221213-e01cb280.pth', 80.26),
}
# timm's repvgg_*.rvgg_in1k weights (timm has no g2 archs).
TIMM_ARCHS = ('A0', 'A1', 'A2', 'B0', 'B1', 'B1g4', 'B2', 'B2g4', 'B3', 'B3g4')
TIMM_TAG = 'rvgg_in1k'
TIMM_URL = 'https://huggingface.co/timm/{}/resolve/main/model.safetensors'
# torch.hub's convention: ``name-<first hex digits of the SHA-256>.ext``.
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z]+$')


@dataclass(frozen=True)
class Remote:
    """A source as the user wrote it, its URL, cache name and hash prefix."""

    source: str
    url: str
    filename: str
    hash_prefix: Optional[str] = None


def is_remote(source: str) -> bool:
    return '://' in os.fspath(source)


def mmpretrain_name(arch: str) -> str:
    return f'{MMPRETRAIN_SCHEME}repvgg-{arch}'


def missing_weights_help(path: str, arch: Optional[str] = None) -> str:
    """How to get the ImageNet weights a config reads from the missing
    ``path``: the names that download them, or the conversion command."""
    example = arch or 'B2'
    names = []
    if arch in MMPRETRAIN_FILES:
        names.append(repr(mmpretrain_name(arch)))
    if arch in TIMM_ARCHS:
        names.append(repr(f'{TIMM_SCHEME}repvgg_{arch.lower()}.{TIMM_TAG}'))
    fetched = (f'Use published ImageNet weights, downloaded once on first '
               f'use: checkpoint={" or ".join(names)}. Or get a file, '
               if names else 'Get ImageNet weights first: ')
    return (f'{fetched}e.g. the official RepVGG-{example}-train.pth '
            '(DingXiaoH/RepVGG release, Google Drive links in its README), '
            f'and convert it: python tools/convert_checkpoint.py SRC {path} '
            f'--arch {arch or "ARCH"}')


def _by_url(source: str, url: str, filename: str = '') -> Remote:
    filename = filename or osp.basename(urlparse(url).path)
    if not filename:
        raise CheckpointError(f'{source}: the URL names no file; give the '
                              'URL of a .pth or .safetensors file')
    match = _HASH_IN_NAME.search(filename)
    return Remote(source, url, filename, match.group(1) if match else None)


def resolve(source: str) -> Remote:
    """The URL and cache name of a remote source, without the network."""
    if source.startswith(MMPRETRAIN_SCHEME):
        name = source[len(MMPRETRAIN_SCHEME):].lower()
        by_name = {f'repvgg-{a}'.lower(): a for a in MMPRETRAIN_FILES}
        if name not in by_name:
            known = ', '.join(mmpretrain_name(a) for a in MMPRETRAIN_FILES)
            raise CheckpointError(f'{source}: no such mmpretrain RepVGG '
                                  f'weights; known: {known}')
        return _by_url(source,
                       MMPRETRAIN_URL + MMPRETRAIN_FILES[by_name[name]][0])
    if source.startswith(TIMM_SCHEME):
        model_id = source[len(TIMM_SCHEME):]
        if '.' not in model_id:  # timm's default pretrained tag
            model_id = f'{model_id}.{TIMM_TAG}'
        known = [f'repvgg_{arch.lower()}.{TIMM_TAG}' for arch in TIMM_ARCHS]
        if model_id not in known:
            raise CheckpointError(
                f'{source}: no such timm RepVGG weights; known: '
                f'{", ".join(TIMM_SCHEME + k for k in known)}')
        # Every hub model's file is model.safetensors: the id names the copy.
        return _by_url(source, TIMM_URL.format(model_id),
                       f'{model_id}.safetensors')
    if source.startswith(('http://', 'https://')):
        return _by_url(source, source)
    raise CheckpointError(
        f'{source}: unsupported checkpoint source; use a local file or one '
        f'of {", ".join(s + "..." for s in SCHEMES)}')


def cache_dir() -> str:
    """Where torch.hub and mmengine keep their downloads too."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def cached_path(remote: Remote) -> str:
    """The cache file of ``remote`` (one put there is used as it is)."""
    return osp.join(cache_dir(), remote.filename)


def _what(remote: Remote) -> str:
    same = remote.source == remote.url
    return remote.url if same else f'{remote.source} ({remote.url})'


def _cause(err: Exception) -> str:
    if isinstance(err, HTTPError):
        return f'HTTP {err.code} {err.reason}'
    if isinstance(err, URLError):
        return str(err.reason)
    return f'{type(err).__name__}: {err}'


class DownloadError(CheckpointError):
    """The server could not be reached; nothing was saved."""


def _download(remote: Remote, dst: str) -> None:
    """``torch.hub.download_url_to_file``, its failures as one error."""
    try:
        torch.hub.download_url_to_file(
            remote.url, dst, remote.hash_prefix, progress=True)
    except RuntimeError as err:
        if 'invalid hash value' not in str(err):
            raise
        raise CheckpointError(
            f'{_what(remote)}: the downloaded bytes do not match the SHA-256 '
            f'prefix {remote.hash_prefix} in the file name (a transfer cut '
            'short, or a different file at that URL); nothing was saved. '
            'Try again, or put a good copy at '
            f'{cached_path(remote)}') from None
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(
            f'{_what(remote)}: download failed ({_cause(err)}); nothing was '
            f'saved. Offline? Download the file elsewhere and put it at '
            f'{cached_path(remote)} (used from there without a request; '
            '$TORCH_HOME moves the cache), or use a local checkpoint file of '
            'any layout instead') from None


def _fetch_once(remote: Remote, read: Callable[[str], dict]) -> dict:
    path = cached_path(remote)
    if osp.isfile(path):
        try:
            return read(path)
        except CheckpointError as err:
            raise CheckpointError(
                f'{err} (the cached copy of {_what(remote)}: delete it to '
                'download again)') from None
    os.makedirs(cache_dir(), exist_ok=True)
    # Hidden, unique, ending in the cache name (its suffix names the format).
    staging = osp.join(cache_dir(), f'.{uuid.uuid4().hex}.{remote.filename}')
    try:
        _download(remote, staging)
        try:
            checkpoint = read(staging)
        except CheckpointError as err:
            raise CheckpointError(
                str(err).replace(staging, _what(remote)) +
                ' (downloaded, not kept)') from None
        os.replace(staging, path)
    finally:
        if osp.exists(staging):
            os.remove(staging)
    return checkpoint


def fetch_checkpoint(source: str, read: Callable[[str], dict]) -> dict:
    """``read`` a remote checkpoint, downloaded into the cache once (rank 0
    first, as mmengine's ``load_from_http``) and kept if ``read`` took it."""
    remote = resolve(source)
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = _fetch_once(remote, read)
    if world_size > 1:
        barrier()
    if rank > 0:
        checkpoint = _fetch_once(remote, read)
    return checkpoint
