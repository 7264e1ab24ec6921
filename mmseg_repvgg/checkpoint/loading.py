"""Load RepVGG weights of any layout into our backbone, and save them.

Per block, a fused or train-time checkpoint goes into a fused or
train-time model (the block converts between its forms). This module
knows the checkpoints and imports the models, never the reverse.
"""
import os
import os.path as osp
from typing import Callable, Dict, Optional, Tuple

import torch
from mmengine.logging import print_log

from ..atomic_io import atomic_path
from ..errors import CheckpointError
from ..models.backbones.repvgg import RepVGG, RepVGGBlock
from .digest import add_digest
from .download import fetch_checkpoint, is_remote, missing_weights_help
from .layouts import (FUSED_PREFIX, block_name, detect_layout, few_keys,
                      flatten_ours, normalize_state_dict, to_ours_keys)
from .safe_load import checkpoint_in, safe_torch_load


def read_checkpoint(filename: str, arch: Optional[str] = None) -> dict:
    """Read a checkpoint safely: weights only, never arbitrary pickles.

    A URL or a name (``mmpretrain://repvgg-B2``) is downloaded once into
    torch's hub cache (:mod:`.download`) and read as a local file.
    ``.safetensors`` files are read with the ``safetensors`` package; any
    other file with :func:`mmseg_repvgg.checkpoint.safe_load.safe_torch_load`.

    Args:
        filename (str): A local file, URL or name.
        arch (str, optional): The arch it is for, named in the help when
            the file is missing. Defaults to None.

    Raises:
        CheckpointError: A missing, unreadable or undownloadable file, or a
            pickle holding anything but tensors and mmengine's metadata types.
    """
    filename = os.fspath(filename)
    if is_remote(filename):
        return fetch_checkpoint(filename, _read_file)
    if osp.isdir(filename):
        raise CheckpointError(
            f'{filename} is a directory; {checkpoint_in(filename)}')
    if not osp.isfile(filename):
        raise CheckpointError(f'{filename}: checkpoint file not found. '
                              f'{missing_weights_help(filename, arch)}')
    return _read_file(filename)


def _read_file(filename: str) -> dict:
    if filename.endswith('.safetensors'):
        return _read_safetensors(filename)
    return safe_torch_load(filename, map_location='cpu')


def _read_safetensors(filename: str) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f'{filename}: reading .safetensors needs the safetensors package '
            '(pip install safetensors)') from None
    try:
        return load_file(filename, device='cpu')
    except Exception as err:  # SafetensorError, OSError: a corrupt header
        raise CheckpointError(
            f'{filename}: not a readable safetensors file ({err}); '
            're-download it') from None


def _repvgg_blocks(model) -> Dict[str, torch.nn.Module]:
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, RepVGGBlock)
    }


def _shape(tensor) -> str:
    return str(list(tensor.shape))


def key_differences(expected: dict, got: dict):
    """The keys of ``got`` that do not fit ``expected`` (key -> tensor).

    The one key-and-shape comparison of the package: the backbone's
    pretrained loading and the segmentor-level checks
    (:func:`mmseg_repvgg.checkpoint.fit.check_state_dict_matches`) both use it.

    Returns:
        tuple[list, list, list]: Missing keys, unexpected keys, and keys
        whose shapes differ (each in ``expected``'s order, then ``got``'s).
    """
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    resized = [
        k for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, resized


def check_fits(expected: dict, got: dict, what: str = 'model') -> None:
    """Raise unless ``got`` has exactly ``expected``'s keys and shapes.

    Args:
        expected (dict): Key -> tensor of the target (a state dict).
        got (dict): Key -> tensor to load.
        what (str): Name of the target in the message.

    Raises:
        CheckpointError: Naming the first missing, unexpected and
            shape-mismatched keys, with both shapes.
    """
    missing, unexpected, resized = key_differences(expected, got)
    mismatched = [
        f'{k} (checkpoint {_shape(got[k])}, {what} {_shape(expected[k])})'
        for k in resized
    ]
    problems = []
    if mismatched:
        problems.append(f'{len(mismatched)} tensors of other shapes: '
                        f'{few_keys(mismatched, 3)}')
    if missing:
        problems.append(f'{len(missing)} missing: {few_keys(missing, 3)}')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected: '
                        f'{few_keys(unexpected, 3)}')
    if problems:
        raise CheckpointError('; '.join(problems))


def _prefixed(prefix: str, tensors: dict) -> dict:
    return {prefix + k: v for k, v in tensors.items()}


def _fuse(src: dict, block: RepVGGBlock, name: str) -> dict:
    """The fused conv of a train-time ``src`` for a deploy ``block``."""
    train_block = block.train_time_twin()
    expected = train_block.state_dict()
    src = dict(src)
    for key, value in expected.items():
        if key.endswith('num_batches_tracked'):  # a counter, often absent
            src.setdefault(key, value)
    check_fits(
        _prefixed(name + '.', expected),
        _prefixed(name + '.', src),
        what='model')
    train_block.load_state_dict(src)
    kernel, bias = train_block.fused_kernel_bias()
    return {'branch_reparam.weight': kernel, 'branch_reparam.bias': bias}


def _convert_block(src: dict, block, name: str) -> dict:
    fused_src = any(k.startswith(FUSED_PREFIX) for k in src)
    # Incomplete blocks and matching forms go as they are: check_fits names
    # what is missing or extra.
    incomplete = fused_src and not {
        'branch_reparam.weight', 'branch_reparam.bias'
    } <= set(src)
    if not src or incomplete or fused_src == block.deploy:
        return src
    if fused_src:
        return block.state_from_fused(src['branch_reparam.weight'],
                                      src['branch_reparam.bias'])
    return _fuse(src, block, name)


def _convert_blocks(blocks: dict, model) -> dict:
    by_name = {block_name(b): branches for b, branches in blocks.items()}
    out = {}
    for name, block in _repvgg_blocks(model).items():
        out.update(
            _prefixed(name + '.',
                      _convert_block(by_name.pop(name, {}), block, name)))
    # Blocks the model lacks stay as they are, to be reported as unexpected.
    for name, branches in by_name.items():
        out.update(_prefixed(name + '.', branches))
    # Sources without num_batches_tracked (it is a counter, not a weight).
    for key, value in model.state_dict().items():
        if key.endswith('num_batches_tracked') and key not in out:
            bn_prefix = key[:-len('num_batches_tracked')]
            if any(k.startswith(bn_prefix) for k in out):
                out[key] = value.clone()
    return out


def convert_to_ours(state_dict: dict,
                    model,
                    layout: Optional[str] = None) -> dict:
    """A checkpoint of any layout as our state dict for ``model``.

    Args:
        state_dict (dict): A checkpoint or state dict, wrapped or not.
        model (RepVGG): The backbone to fit (train-time or fused, or mixed).
        layout (str, optional): Skip detection. Defaults to None.

    Returns:
        dict: Our keys. Not checked against the model: see
        :func:`check_fits`.
    """
    state_dict = normalize_state_dict(state_dict)
    layout = layout or detect_layout(state_dict)
    return _convert_blocks(to_ours_keys(state_dict, layout), model)


def _arch_names_matching(ours: dict, deploy: bool):
    """Arch names whose backbone has exactly the shapes of ``ours``."""
    shapes = {
        k: v.shape
        for k, v in ours.items() if not k.endswith('num_batches_tracked')
    }
    names = []
    # On the meta device no memory is allocated, so every arch builds cheaply.
    with torch.device('meta'):
        for name in RepVGG.arch_settings:
            expected = RepVGG(name, deploy=deploy).state_dict()
            if shapes == {
                    k: v.shape
                    for k, v in expected.items()
                    if not k.endswith('num_batches_tracked')
            }:
                names.append(name)
    return names


def _arch_name(model) -> Optional[str]:
    """The arch name of a backbone, None for a custom arch."""
    names = [
        name for name, arch in type(model).arch_settings.items()
        if arch == model.arch
    ]
    return names[0] if names else None


def _arch_hint(blocks: dict, model) -> str:
    ours = flatten_ours(blocks)
    deploy = all(
        k.startswith(FUSED_PREFIX) for b in blocks.values() for k in b)
    names = _arch_names_matching(ours, deploy)
    model_arch = _arch_name(model) or 'a custom arch'
    if names and model_arch not in names:
        return (f'. It is a checkpoint for another arch, RepVGG-{names[0]}, '
                f'while the model is {model_arch}: set arch={names[0]!r} or '
                "use weights of the model's arch")
    return f'. Is it a checkpoint for another arch? The model is {model_arch}'


def load_pretrained(backbone,
                    filename: str,
                    prefix: Optional[str] = None) -> str:
    """Load a RepVGG checkpoint of any layout into ``backbone``, strictly.

    Args:
        backbone (RepVGG): Our backbone, train-time or fused.
        filename (str): A ``.pth``/``.bin`` (read weights-only) or
            ``.safetensors`` file.
        prefix (str, optional): Load only the keys under it, e.g.
            ``'backbone.'`` of a whole segmentor (as mmengine's Pretrained
            ``prefix``). Defaults to None.

    Returns:
        str: The detected layout.

    Raises:
        CheckpointError: The file is missing or unsafe, no known layout, or
            any tensor missing, unexpected or of another shape (naming the
            file, the layout and the keys).
    """
    checkpoint = read_checkpoint(filename, _arch_name(backbone))
    return _load_into(backbone, checkpoint, filename, prefix)


def _load_into(backbone, checkpoint: dict, filename: str,
               prefix: Optional[str]) -> str:
    try:
        state_dict = normalize_state_dict(checkpoint, prefix)
        layout = detect_layout(state_dict)
        blocks = to_ours_keys(state_dict, layout)
    except CheckpointError as err:
        raise CheckpointError(f'{filename}: {err}') from None
    try:
        converted = _convert_blocks(blocks, backbone)
        check_fits(backbone.state_dict(), converted)
    except CheckpointError as err:
        raise CheckpointError(
            f'{filename}: this {layout} checkpoint does not fit the model: '
            f'{err}{_arch_hint(blocks, backbone)}') from None
    backbone.load_state_dict(converted, strict=True)
    print_log(
        f'loaded RepVGG weights from {filename} ({layout} layout, '
        f'{len(converted)} tensors)',
        logger='current')
    return layout


def save_converted(state_dict: dict,
                   filename: str,
                   meta: Optional[dict] = None,
                   verify: Optional[Callable[[str], None]] = None) -> None:
    """Write ``{'state_dict': ..., 'meta': ...}`` atomically, with the
    digest of its tensors (:mod:`.digest`).

    The file is written beside ``filename`` under a temporary name, checked
    by ``verify(temp_path)`` if given, then renamed over ``filename``; on
    any failure ``filename`` is left as it was.

    Args:
        state_dict (dict): Tensors to save.
        filename (str): Destination.
        meta (dict, optional): Plain metadata (str/int/float/list/dict).
        verify (callable, optional): Raises if the written file is bad.
    """
    with atomic_path(filename) as tmp:
        torch.save(
            add_digest({
                'state_dict': state_dict,
                'meta': dict(meta or {})
            }), tmp)
        if verify is not None:
            verify(tmp)


def convert_file(src: str,
                 dst: str,
                 arch,
                 deploy: bool = False,
                 prefix: Optional[str] = None) -> Tuple[str, int]:
    """Convert a checkpoint of any layout to ours, verified, atomically.

    Args:
        src (str): Source checkpoint.
        dst (str): Destination; untouched unless everything succeeds.
        arch (str | dict): The RepVGG arch of the checkpoint.
        deploy (bool): Save the fused form. Defaults to False.
        prefix (str, optional): Key prefix of the RepVGG in ``src``.

    Returns:
        tuple[str, int]: The source layout and the number of tensors saved.
    """
    if osp.abspath(src) == osp.abspath(dst):
        raise CheckpointError(f'{dst}: the destination is the source; '
                              'write the converted weights elsewhere')
    checkpoint = read_checkpoint(src)  # before building a big model
    model = RepVGG(arch, deploy=deploy)
    layout = _load_into(model, checkpoint, src, prefix)
    state_dict = model.state_dict()

    def verify(path):
        fresh = RepVGG(arch, deploy=deploy)
        load_pretrained(fresh, path)
        for key, value in fresh.state_dict().items():
            if not torch.equal(value, state_dict[key]):
                raise CheckpointError(
                    f'{dst}: verification failed at {key}; nothing written')

    meta = dict(
        source=src if is_remote(src) else osp.basename(src),
        source_layout=layout,
        arch=arch,
        deploy=deploy,
        converter='mmseg_repvgg.checkpoint')
    save_converted(state_dict, dst, meta, verify=verify)
    return layout, len(state_dict)
