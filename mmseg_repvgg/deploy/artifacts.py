"""Deploy artifacts, written once fused == unfused: the fused model's
checkpoint and its config (what fits: :mod:`mmseg_repvgg.checkpoint.fit`)."""
import copy
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.runner import weights_to_cpu
from torch import nn

from ..atomic_io import atomic_path, atomic_write
from ..checkpoint.digest import add_digest
from ..checkpoint.fit import (DEPLOY_META_KEY, is_deploy_checkpoint,
                              load_segmentor)
from ..errors import CheckpointError, ConfigError
from ..models.backbones import RepVGG
from ..models.fuse import (TRAIN_ONLY_HEADS, FusionReport, check_fused_equal,
                           fuse_segmentor)
from ..models.reparam import fusable_modules, is_batchnorm


def deploy_config(cfg: Config) -> Config:
    """A copy of ``cfg`` that builds what :func:`fuse_segmentor` returns:
    deploy-form RepVGG, no auxiliary head, no pretrained init, no norm in
    the heads and neck (each conv keeps the folded BN's bias)."""
    cfg = copy.deepcopy(cfg)
    model = cfg.get('model')
    if not model or 'backbone' not in model:
        raise ConfigError('the config has no model.backbone to deploy')
    backbone_type = model.backbone.get('type')
    if backbone_type not in (
            'RepVGG', RepVGG) and not str(backbone_type).endswith('.RepVGG'):
        raise ConfigError(
            f'backbone {backbone_type} has no deploy form; only RepVGG '
            'backbones can be re-parameterized')
    model.backbone.deploy = True
    model.backbone.init_cfg = None
    model.pop('pretrained', None)
    for name in TRAIN_ONLY_HEADS:
        model.pop(name, None)
    heads = model.decode_head
    for head in heads if isinstance(heads, (list, tuple)) else [heads]:
        head.norm_cfg = None
    if isinstance(model.get('neck'), dict) and 'norm_cfg' in model.neck:
        model.neck.norm_cfg = None
    return cfg


def deploy_meta(report: FusionReport,
                source: str,
                source_meta: Optional[Dict] = None) -> Dict:
    """``meta`` of a deploy checkpoint: the ``source`` checkpoint (or a
    description), what ``report`` says was fused, part of ``source_meta``."""
    source_meta = source_meta or {}
    meta = {
        key: source_meta[key]
        for key in ('dataset_meta', 'epoch', 'iter', 'seed', 'experiment_name')
        if key in source_meta
    }
    meta[DEPLOY_META_KEY] = dict(
        source=str(source),
        fused_blocks=list(report.blocks),
        folded_conv_bn=list(report.conv_bn),
        dropped=list(report.dropped),
        time=time.strftime('%Y-%m-%d %H:%M:%S'))
    return meta


def save_deploy_checkpoint(model: nn.Module, cfg: Optional[Config], out: str,
                           meta: Dict) -> Tuple[str, Optional[str]]:
    """Write a :func:`fuse_segmentor` model to ``out`` and, given its
    training ``cfg``, the deploy config to ``out``'s ``.py``, atomically;
    ``meta`` from :func:`deploy_meta`. Returns both paths (config: None)."""
    if DEPLOY_META_KEY not in meta:
        raise ValueError('meta must come from deploy_meta()')
    leftovers = fusable_modules(model) + [
        name for name, module in model.named_modules() if is_batchnorm(module)
    ] + [name for name in TRAIN_ONLY_HEADS if hasattr(model, name)]
    if leftovers:
        raise ConfigError(
            f'{out}: the model is not in deploy form ({", ".join(leftovers)} '
            'remain); fuse it with fuse_segmentor first')
    cfg_path = osp.splitext(out)[0] + '.py' if cfg is not None else None
    if cfg_path == out:
        raise ConfigError(f'{out}: a checkpoint cannot end in .py (its '
                          'config is written there); use .pth')
    if cfg is not None:
        # Derive before writing anything: a config error leaves no files.
        header = (
            f'# Deploy config of {cfg.filename or "a training config"}, '
            'written by mmseg_repvgg:\n# fused RepVGG, heads without BN, no '
            f'auxiliary head. It loads {osp.basename(out)}\n# strictly; '
            'tools/test.py uses it as it is.\n')
        text = header + deploy_config(cfg).pretty_text
    checkpoint = dict(meta=meta, state_dict=weights_to_cpu(model.state_dict()))
    with atomic_path(out) as tmp:
        torch.save(add_digest(checkpoint), tmp)
    if cfg is not None:
        atomic_write(cfg_path, text)
    return out, cfg_path


@dataclass
class ReparamResult:
    """What :func:`reparam_checkpoint` wrote and measured."""

    report: FusionReport
    max_abs: float
    rel: float
    checkpoint: str
    config: Optional[str]


def reparam_checkpoint(cfg: Config,
                       checkpoint: str,
                       out: str,
                       shape: Sequence[int] = (1, 3, 128, 256),
                       tol: float = 1e-4) -> ReparamResult:
    """Fuse a train-time checkpoint and save it if fused == unfused.

    Args:
        cfg (Config): The training config of ``checkpoint``.
        checkpoint (str): The train-time checkpoint (not a fused one).
        out (str): The deploy checkpoint (its config: same path, ``.py``).
        shape (Sequence[int]): Random input of the equality check.
        tol (float): See :func:`check_fused_equal`.
    """
    if osp.abspath(out) == osp.abspath(checkpoint):
        raise ConfigError(f'{out}: OUT must differ from CHECKPOINT')
    model, ckpt = load_segmentor(cfg, checkpoint)
    if is_deploy_checkpoint(ckpt):
        source = ckpt['meta'][DEPLOY_META_KEY].get('source')
        raise CheckpointError(
            f'{checkpoint} is already a deploy checkpoint (fused from '
            f'{source}); fusing it again would change nothing. Use it as it '
            f'is, with the config beside it '
            f'({osp.splitext(checkpoint)[0]}.py)')
    return save_verified_deploy(model, cfg, out, checkpoint, ckpt.get('meta'),
                                shape, tol)


def save_verified_deploy(model: nn.Module,
                         cfg: Optional[Config],
                         out: str,
                         source: str,
                         source_meta: Optional[Dict] = None,
                         shape: Sequence[int] = (1, 3, 128, 256),
                         tol: float = 1e-4) -> ReparamResult:
    """:func:`reparam_checkpoint` for an unfused model in memory (set to
    eval mode), as SaveDeployHook saves; ``source`` and ``source_meta`` go
    to :func:`deploy_meta`."""
    fused, report = fuse_segmentor(model)
    if not report.changed:
        raise CheckpointError(
            f'{source}: nothing to fuse, the model of this config is '
            'already in deploy form; use the checkpoint as it is')
    max_abs, rel = check_fused_equal(model, fused, shape, tol)
    meta = deploy_meta(report, source, source_meta)
    paths = save_deploy_checkpoint(fused, cfg, out, meta)
    return ReparamResult(report, max_abs, rel, *paths)
