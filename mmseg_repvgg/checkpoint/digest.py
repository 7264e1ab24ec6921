"""A SHA-256 of a checkpoint's tensors, saved in its ``meta`` and checked on
load: torch and mmengine would load and score a flipped byte silently."""
import hashlib
from typing import Iterator, Tuple

import torch

from ..errors import CheckpointError

DIGEST_KEY = 'tensor_sha256'


def _tensors(obj, path: str) -> Iterator[Tuple[str, torch.Tensor]]:
    """Every tensor in ``obj``'s dicts, lists and tuples, in their order."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f'{path}/{key}')
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _tensors(value, f'{path}/{index}')


def tensor_digest(checkpoint: dict) -> str:
    """Hex SHA-256 over each tensor outside ``meta`` of a checkpoint (in its
    saved order, which loading keeps): path, dtype, shape, bytes."""
    sha = hashlib.sha256()
    for key, value in checkpoint.items():
        if key == 'meta':
            continue
        for path, tensor in _tensors(value, key):
            sha.update(f'{path} {tensor.dtype} {list(tensor.shape)}'.encode())
            data = tensor.detach().cpu().contiguous().reshape(-1)
            sha.update(data.view(torch.uint8).numpy())
    return sha.hexdigest()


def add_digest(checkpoint: dict) -> dict:
    """Put the :func:`tensor_digest` into ``checkpoint['meta']``, in place."""
    meta = dict(checkpoint.get('meta') or {})
    meta[DIGEST_KEY] = tensor_digest(checkpoint)
    checkpoint['meta'] = meta
    return checkpoint


def check_digest(checkpoint, filename) -> None:
    """Refuse a checkpoint whose tensors do not match the digest it has."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    expected = meta.get(DIGEST_KEY) if isinstance(meta, dict) else None
    if expected is not None and tensor_digest(checkpoint) != expected:
        raise CheckpointError(
            f'{filename}: damaged: its tensors do not match the SHA-256 saved '
            'with them (changed on disk or in a copy after it was written); '
            'use an intact copy or another checkpoint')
