"""Checks tools/train.py and tools/test.py run before the Runner starts,
each catching in one line what mmseg would fail late or not at all."""
import copy
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from mmengine.registry import init_default_scope
from mmengine.runner import find_latest_checkpoint
from mmseg.registry import MODELS

from ..checkpoint import (check_checkpoint_fits, read_checkpoint,
                          safe_torch_load)
from ..checkpoint.download import (DownloadError, cached_path, is_remote,
                                   missing_weights_help, resolve)
from ..datasets.checked_cityscapes import check_data_root
from ..errors import CheckpointError, ConfigError, UserError
from ..models.backbones.repvgg import PRETRAINED_TYPES

_PROBE_SIZE = 64  # any size that survives the backbone's total stride
# Config hooks that shape a model to a fused checkpoint when it loads.
_SHAPING_HOOKS = ('CheckpointFitHook', 'ReparamHook')


def _on_meta(build: Callable):
    """``build()`` on the meta device; None if it fails (UserError raises)."""
    init_default_scope('mmseg')
    try:
        with torch.device('meta'):
            return build()
    except UserError:
        raise
    except Exception:  # not ours to judge
        return None


def backbone_out_channels(model_cfg: dict) -> Optional[List[int]]:
    """The channels of each output of the backbone of a segmentor config's
    ``model``; None if the backbone cannot be built here."""
    backbone_cfg = dict(model_cfg['backbone'])
    backbone_cfg.pop('init_cfg', None)  # meta tensors load nothing anyway
    in_channels = backbone_cfg.get('in_channels', 3)

    def outputs():
        backbone = MODELS.build(backbone_cfg)
        backbone.eval()  # some train() overrides return None
        probe = torch.empty(1, in_channels, _PROBE_SIZE, _PROBE_SIZE)
        with torch.no_grad():
            return backbone(probe)

    outs = _on_meta(outputs)
    if outs is None:
        return None
    if isinstance(outs, torch.Tensor):
        outs = [outs]
    return [int(out.shape[1]) for out in outs]


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_head(head_cfg: dict, outs: Sequence[int], name: str) -> None:
    in_channels = head_cfg.get('in_channels')
    if in_channels is None:
        return
    in_index = head_cfg.get('in_index', -1)
    indices = _as_list(in_index)
    for index in indices:
        if not -len(outs) <= index < len(outs):
            raise ConfigError(
                f'model.{name}.in_index={in_index} but the backbone has '
                f'{len(outs)} outputs (in_index 0..{len(outs) - 1}); set '
                f'model.{name}.in_index to one of them')
    expected = [outs[index] for index in indices]
    if _as_list(in_channels) == expected:
        return
    many = isinstance(in_channels, (list, tuple)) or len(expected) > 1
    fix = expected if many else expected[0]
    where = ', '.join(f'{c} at in_index {i}'
                      for i, c in zip(indices, expected))
    raise ConfigError(
        f'model.{name}.in_channels={in_channels} but the backbone gives '
        f'{where} (backbone out_channels {list(outs)}); set '
        f'model.{name}.in_channels={fix}, or in_index to the output that '
        f'has {in_channels} channels')


def check_head_channels(model_cfg: dict) -> None:
    """Raise ConfigError unless every head's ``in_channels`` (at its
    ``in_index``) in a config's ``model`` are what the backbone gives;
    models with a neck pass."""
    model_cfg = segmentor_cfg(model_cfg)
    if model_cfg.get('neck') or 'backbone' not in model_cfg:
        return
    outs = backbone_out_channels(model_cfg)
    if outs is None:
        return
    for key in ('decode_head', 'auxiliary_head'):
        heads = model_cfg.get(key)
        if isinstance(heads, (list, tuple)):
            for i, head in enumerate(heads):
                _check_head(head, outs, f'{key}.{i}')
        elif heads:
            _check_head(heads, outs, key)


def segmentor_cfg(model_cfg: dict) -> dict:
    """The segmentor inside a wrapper config (``--tta``: SegTTAModel)."""
    while 'backbone' not in model_cfg and isinstance(
            model_cfg.get('module'), dict):
        model_cfg = model_cfg['module']
    return model_cfg


def check_checkpoint_file_fits_config(cfg, filename: str,
                                      purpose: str) -> None:
    """Apply :func:`~mmseg_repvgg.checkpoint.check_checkpoint_fits` for
    ``purpose`` to the file and the complete config's model on the meta
    device: the answer the config's ``CheckpointFitHook`` gives, before the
    dataloaders are built."""
    checkpoint = safe_torch_load(filename)
    model_cfg = copy.deepcopy(dict(segmentor_cfg(cfg.model)))
    model_cfg.pop('pretrained', None)
    model_cfg['backbone'].pop('init_cfg', None)
    # At test the config's hook shapes the model to a fused checkpoint.
    reshape = purpose == 'test' and any(
        hook.get('type') in _SHAPING_HOOKS
        for hook in cfg.get('custom_hooks') or [])
    # A model that cannot be built (None): the checkpoint alone is checked.
    model = _on_meta(lambda: MODELS.build(model_cfg))
    check_checkpoint_fits(
        model, checkpoint, filename, purpose, reshape=reshape)


def _pretrained(model_cfg: dict) -> List[Tuple[str, str]]:
    """(``--cfg-options`` key, path) of each pretrained file a model reads."""
    inits = (model_cfg.get('backbone') or {}).get('init_cfg')
    found = [('model.pretrained', model_cfg.get('pretrained'))]
    for i, init in enumerate(_as_list(inits)):
        if isinstance(init, dict) and init.get('type') in PRETRAINED_TYPES:
            at = '' if isinstance(inits, dict) else f'.{i}'
            found.append((f'model.backbone.init_cfg{at}.checkpoint',
                          init.get('checkpoint')))
    return [(key, path) for key, path in found if path]


def _is_repvgg(model_cfg: dict) -> bool:
    return (model_cfg.get('backbone') or {}).get('type') == 'RepVGG'


def check_pretrained_exists(model_cfg: dict) -> None:
    """Refuse a missing pretrained file (the Runner loads it late)."""
    repvgg = _is_repvgg(model_cfg)
    for _, path in _pretrained(model_cfg):
        if repvgg and is_remote(path):
            resolve(path)
        if is_remote(path) or osp.isfile(path):
            continue
        get = 'Download it or fix the path'
        if repvgg:
            arch = model_cfg['backbone'].get('arch')  # a dict: custom arch
            get = missing_weights_help(path,
                                       arch if isinstance(arch, str) else None)
        raise CheckpointError(
            f'{path}: pretrained backbone checkpoint not found. {get}. Or '
            'train from scratch: --cfg-options model.backbone.init_cfg=None')


def fetch_pretrained(model_cfg: dict) -> None:
    """Download a RepVGG's pretrained weights now, before the Runner writes
    anything (other local ranks wait in the Runner for rank 0's)."""
    if not _is_repvgg(model_cfg) or os.environ.get('LOCAL_RANK', '0') != '0':
        return
    for key, path in _pretrained(model_cfg):
        if not is_remote(path) or osp.isfile(cached_path(resolve(path))):
            continue
        try:
            read_checkpoint(path)
        except DownloadError as err:
            raise DownloadError(f'{err}: --cfg-options {key}=PATH') from None


def _datasets(dataset):
    """The dataset configs in ``dataset``, wrappers opened."""
    if not isinstance(dataset, dict):
        return
    if 'datasets' not in dataset and 'dataset' not in dataset:
        yield dataset
    for part in dataset.get('datasets', [dataset.get('dataset')]):
        yield from _datasets(part)


def check_data_roots(cfg, mode: str) -> None:
    """Refuse a missing ``data_root`` of a dataloader ``mode`` runs."""
    loaders = ['test_dataloader']
    if mode == 'train':
        loaders = ['train_dataloader']
        if cfg.get('val_cfg'):
            loaders.append('val_dataloader')
    for loader in loaders:
        for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
            check_data_root(dataset.get('data_root'))


def check_before_run(cfg, mode: str) -> None:
    """What tools/train.py and tools/test.py (``mode`` 'train' or 'test')
    check before the Runner runs, on the complete config."""
    check_head_channels(cfg.model)
    filename, purpose = cfg.get('load_from'), 'test'
    if mode == 'train':
        check_pretrained_exists(cfg.model)
        purpose = 'resume' if cfg.get('resume') else 'load_from'
        if cfg.get('resume') and not filename:
            filename = find_latest_checkpoint(cfg.work_dir)
    # Remote checkpoints (http://, s3://) are mmengine's to fetch and check.
    if filename and '://' not in filename:
        check_checkpoint_file_fits_config(cfg, filename, purpose)
    check_data_roots(cfg, mode)
    if mode == 'train':  # the slowest check last
        fetch_pretrained(cfg.model)
