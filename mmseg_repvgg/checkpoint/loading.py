"""Load RepVGG weights of any layout into our backbone, fused or not (per
block), also as the initializer ``RepVGGPretrained``, and save them; it
imports the models, never the reverse."""
import os
import os.path as osp
from typing import Callable, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model.weight_init import update_init_info
from mmseg.registry import WEIGHT_INITIALIZERS

from ..atomic_io import atomic_path
from ..errors import CheckpointError
from ..models.backbones.repvgg import RepVGG, RepVGGBlock
from .digest import add_digest
from .download import fetch_checkpoint, is_remote, missing_weights_help
from .layouts import (FUSED_PREFIX, all_fused, block_name, detect_layout,
                      few_keys, flatten_blocks, normalize_state_dict,
                      to_ours_keys)
from .safe_load import refuse_directory, safe_torch_load


def read_checkpoint(filename: str, arch: Optional[str] = None) -> dict:
    """Read a checkpoint weights-only from a file, URL or name (downloaded
    once); a missing file's help says how to get ``arch``'s weights."""
    filename = os.fspath(filename)
    if is_remote(filename):
        return fetch_checkpoint(filename, _read_file)
    refuse_directory(filename)
    if not osp.isfile(filename):
        raise CheckpointError(f'{filename}: checkpoint file not found. '
                              f'{missing_weights_help(filename, arch)}')
    return _read_file(filename)


def _read_file(filename: str) -> dict:
    if not filename.endswith('.safetensors'):
        return safe_torch_load(filename, map_location='cpu')
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


def key_differences(expected: dict, got: dict):
    """The missing, unexpected and resized keys of ``got``."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    resized = [
        k for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, resized


def check_fits(expected: dict, got: dict, what: str = 'model') -> None:
    """CheckpointError, naming the first, unless ``got`` has the keys and
    shapes of the state dict ``expected`` (called ``what``)."""
    missing, unexpected, resized = key_differences(expected, got)
    mismatched = [
        f'{k} (checkpoint {list(got[k].shape)}, '
        f'{what} {list(expected[k].shape)})' for k in resized
    ]
    problems = [
        f'{len(keys)} {kind}: {few_keys(keys, 3)}'
        for kind, keys in (('tensors of other shapes', mismatched),
                           ('missing', missing), ('unexpected', unexpected))
        if keys
    ]
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
    check_fits(_prefixed(name + '.', expected), _prefixed(name + '.', src))
    train_block.load_state_dict(src)
    kernel, bias = train_block.fused_kernel_bias()
    return {'branch_reparam.weight': kernel, 'branch_reparam.bias': bias}


def _convert_block(src: dict, block, name: str) -> dict:
    fused_src = any(k.startswith(FUSED_PREFIX) for k in src)
    fused_keys = {'branch_reparam.weight', 'branch_reparam.bias'}
    # Incomplete blocks and matching forms stay: check_fits names the rest.
    incomplete = fused_src and not fused_keys <= set(src)
    if not src or incomplete or fused_src == block.deploy:
        return src
    if fused_src:
        return block.state_from_fused(src['branch_reparam.weight'],
                                      src['branch_reparam.bias'])
    return _fuse(src, block, name)


def _convert_blocks(blocks: dict, model) -> dict:
    by_name = {block_name(b): branches for b, branches in blocks.items()}
    out = {}
    for name, block in model.named_modules():
        if isinstance(block, RepVGGBlock):
            converted = _convert_block(by_name.pop(name, {}), block, name)
            out.update(_prefixed(name + '.', converted))
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
    """A checkpoint or state dict of any ``layout`` (None: detected) as ours
    for the backbone ``model`` (train-time, fused or mixed), unchecked."""
    state_dict = normalize_state_dict(state_dict)
    layout = layout or detect_layout(state_dict)
    return _convert_blocks(to_ours_keys(state_dict, layout), model)


def _shapes(state_dict: dict) -> dict:
    return {
        k: v.shape
        for k, v in state_dict.items() if not k.endswith('num_batches_tracked')
    }


def _arch_name(model) -> Optional[str]:
    archs = type(model).arch_settings
    return next((name for name in archs if archs[name] == model.arch), None)


def _arch_hint(blocks: dict, model) -> str:
    shapes, deploy = _shapes(flatten_blocks(blocks)), all_fused(blocks)
    # On the meta device every arch builds without memory.
    with torch.device('meta'):
        names = [
            name for name in RepVGG.arch_settings
            if _shapes(RepVGG(name, deploy=deploy).state_dict()) == shapes
        ]
    model_arch = _arch_name(model) or 'a custom arch'
    if names and model_arch not in names:
        return (f'. It is a checkpoint for another arch, RepVGG-{names[0]}, '
                f'while the model is {model_arch}: set arch={names[0]!r} or '
                "use weights of the model's arch")
    return f'. Is it a checkpoint for another arch? The model is {model_arch}'


def load_pretrained(backbone,
                    filename: str,
                    prefix: Optional[str] = None) -> str:
    """Load a RepVGG checkpoint of any layout (file, URL or name; the keys
    under ``prefix``) into ``backbone`` strictly; returns the layout."""
    checkpoint = read_checkpoint(filename, _arch_name(backbone))
    return _load_into(backbone, checkpoint, filename, prefix)


@WEIGHT_INITIALIZERS.register_module()
class RepVGGPretrained:
    """Initialize a RepVGG backbone from a checkpoint of any layout.

    Unlike mmengine's ``PretrainedInit``, it converts the layout and loads
    every tensor strictly.

    Args:
        checkpoint (str): A file, URL or name (``mmpretrain://repvgg-B2``).
        prefix (str, optional): Load only the keys under it (``'backbone.'``).
        map_location (str): ``PretrainedInit``'s; tensors load to the CPU.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 map_location: str = 'cpu'):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.wholemodule = True

    def __call__(self, module) -> None:
        layout = load_pretrained(module, self.checkpoint, prefix=self.prefix)
        if hasattr(module, '_params_init_info'):
            info = f'{type(self).__name__}: {self.checkpoint}'
            update_init_info(module, init_info=f'{info} ({layout} layout)')

    def __repr__(self) -> str:
        return f'{type(self).__name__}(checkpoint={self.checkpoint!r})'


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
    """Write the state dict and plain ``meta`` with their digest, atomically;
    ``verify(temp_path)`` raising leaves ``filename`` as it was."""
    with atomic_path(filename) as tmp:
        checkpoint = dict(state_dict=state_dict, meta=dict(meta or {}))
        torch.save(add_digest(checkpoint), tmp)
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
        deploy (bool): Save the fused form.
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
