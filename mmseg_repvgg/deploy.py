"""Deploy a RepVGG segmentor: fuse it, save it, load it, prove it.

RepVGG trains three-branch blocks and PSPNet trains conv+BN pairs; neither
is needed at inference. What :class:`~mmseg_repvgg.engine.ReparamHook` and
the tools (``tools/reparam.py``, ``tools/export_onnx.py``) share lives here:

* :func:`fuse_segmentor` fuses the backbone's blocks
  (:func:`~mmseg_repvgg.models.reparameterize_model`), folds every conv+BN
  pair of the necks and heads into the conv (mmcv's ``fuse_conv_bn``) and
  drops the train-only auxiliary head.
* :func:`deploy_config` derives the config that builds that fused model;
  :func:`save_deploy_checkpoint` writes checkpoint and config side by side;
  :func:`reparam_checkpoint` does all of it for a checkpoint file.
* :func:`load_segmentor` builds the model for any checkpoint, train-time or
  deploy, and loads it strictly.
* :func:`check_fused_equal` compares fused and unfused logits.

ONNX export is in :mod:`mmseg_repvgg.onnx_export`.
"""
import copy
import os.path as osp
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule, fuse_conv_bn
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner import weights_to_cpu
from mmseg.registry import MODELS
from torch import Tensor, nn

from .atomic_io import atomic_path
from .compat import safe_torch_load
from .errors import CheckpointError, ConfigError, UserError
from .models.backbones import RepVGG
from .models.reparam import fusable_modules, is_batchnorm, reparameterize_model

#: ``meta`` key that marks a checkpoint written by save_deploy_checkpoint.
DEPLOY_META_KEY = 'reparam'
#: Heads that only add a training loss; deploy artifacts leave them out.
TRAIN_ONLY_HEADS = ('auxiliary_head', )


class FusionMismatchError(UserError):
    """A fused or exported model's outputs differ from the unfused one's."""


@dataclass
class FusionReport:
    """What :func:`fuse_segmentor` changed.

    Args:
        blocks (list[str]): RepVGG blocks fused into one conv.
        conv_bn (list[str]): ConvModules whose BatchNorm was folded.
        dropped (list[str]): Train-only heads removed.
        unfused_norms (list[str]): BatchNorms that could not be folded
            (not right after a conv); a deployable model has none.
    """

    blocks: List[str] = field(default_factory=list)
    conv_bn: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    unfused_norms: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.blocks or self.conv_bn or self.dropped)

    def summary(self) -> str:
        """One line for logs and tool output."""
        parts = []
        if self.blocks:
            parts.append(f'fused {len(self.blocks)} RepVGG blocks')
        if self.conv_bn:
            parts.append(f'folded {len(self.conv_bn)} conv+BN pairs '
                         f'({", ".join(self.conv_bn)})')
        if self.dropped:
            parts.append(f'dropped {", ".join(self.dropped)}')
        if not parts:
            parts.append('nothing to fuse: the model is already in deploy '
                         'form')
        if self.unfused_norms:
            parts.append(f'{len(self.unfused_norms)} BatchNorm layers are '
                         'not after a conv and stay unfused ('
                         f'{", ".join(self.unfused_norms)})')
        return '; '.join(parts)


def _norm_follows_conv(module: ConvModule) -> bool:
    """Whether the ConvModule computes ``norm(conv(x))`` with a foldable BN.

    mmcv's ``fuse_conv_bn`` pairs a BN with the conv registered before it,
    and a ConvModule registers its conv first whatever its ``order`` is, so
    an ``('norm', 'conv', 'act')`` or ``('conv', 'act', 'norm')`` module
    would be folded wrongly. Such modules are left alone here.
    """
    order = list(module.order)
    norm = module.norm if module.with_norm else None
    return (norm is not None and is_batchnorm(norm)
            and getattr(norm, 'weight', None) is not None
            and isinstance(module.conv, nn.Conv2d)
            and order.index('norm') == order.index('conv') + 1)


def _fold_conv_norms(model: nn.Module) -> List[str]:
    names = [
        name for name, module in model.named_modules()
        if isinstance(module, ConvModule) and _norm_follows_conv(module)
    ]
    modules = dict(model.named_modules())
    for name in names:
        fuse_conv_bn(modules[name])
    return names


def _drop_train_only_heads(model: nn.Module) -> List[str]:
    # mmseg's ``with_auxiliary_head`` is ``hasattr(...) and not None``, so
    # deleting the attribute is what an EncoderDecoder built without one has.
    dropped = [
        name for name in TRAIN_ONLY_HEADS
        if getattr(model, name, None) is not None
    ]
    for name in dropped:
        delattr(model, name)
    return dropped


@torch.no_grad()
def fuse_segmentor(model: nn.Module,
                   inplace: bool = False) -> Tuple[nn.Module, FusionReport]:
    """Turn a trained segmentor into its deploy form.

    Fuses the RepVGG blocks, folds each ``conv -> BN`` ConvModule of the
    necks and heads into its conv (which gains a bias; the BN becomes an
    ``nn.Identity``) and deletes the auxiliary head. Fusing a fused model
    changes nothing and reports so. The result is exact for the model in
    eval mode (BN running statistics).

    Args:
        model (nn.Module): An mmseg segmentor (unwrapped).
        inplace (bool): Fuse ``model`` itself instead of a deep copy.
            Defaults to False.

    Returns:
        tuple[nn.Module, FusionReport]: The fused model and what changed.
    """
    if not inplace:
        model = copy.deepcopy(model)
    report = FusionReport(blocks=fusable_modules(model))
    reparameterize_model(model, inplace=True)
    # Drop before folding: folding a head that is thrown away is wasted work.
    report.dropped = _drop_train_only_heads(model)
    report.conv_bn = _fold_conv_norms(model)
    report.unfused_norms = [
        name for name, module in model.named_modules() if is_batchnorm(module)
    ]
    return model, report


def is_deploy_checkpoint(checkpoint: Dict) -> bool:
    """Whether ``checkpoint`` was written by :func:`save_deploy_checkpoint`."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return isinstance(meta, dict) and DEPLOY_META_KEY in meta


def checkpoint_state_dict(checkpoint: Dict) -> Dict[str, Tensor]:
    """The model weights of a checkpoint, without DDP's ``module.`` prefix."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}


def check_state_dict_matches(model: nn.Module, state_dict: Dict[str, Tensor],
                             source: str) -> None:
    """Raise unless ``state_dict`` has exactly the model's keys and shapes.

    mmengine's Runner loads non-strictly and only warns; a deploy checkpoint
    loaded into a model of another shape would run with random weights.

    Raises:
        CheckpointError: Names a few missing, unexpected or resized keys.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    resized = sorted(
        k for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k]))
    problems = [
        f'{len(keys)} {what} keys (e.g. {", ".join(keys[:3])})'
        for what, keys in (('missing', missing), ('unexpected', unexpected),
                           ('resized', resized)) if keys
    ]
    if problems:
        raise CheckpointError(
            f'{source} does not match the model of this config: '
            f'{"; ".join(problems)}. Use the config the checkpoint was made '
            'with (for a deploy checkpoint: the .py written beside it)')


def _output_path(out: str, suffix: str) -> str:
    return osp.splitext(out)[0] + suffix


def deploy_config(cfg: Config) -> Config:
    """The config that builds the model :func:`fuse_segmentor` returns.

    RepVGG in deploy form, no auxiliary head, heads (and neck) without a
    norm so that each ConvModule has the conv bias the folded BN became,
    and no pretrained init: every weight comes from the deploy checkpoint.

    Args:
        cfg (Config): The training config.

    Returns:
        Config: A copy; ``cfg`` is left unchanged.
    """
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


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Write through ``write(tmp)`` to a temp file, then ``os.replace``."""
    with atomic_path(path) as tmp:
        write(tmp)


def _write_text(text: str) -> Callable[[str], None]:

    def write(path):
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)

    return write


def deploy_meta(report: FusionReport,
                source: str,
                source_meta: Optional[Dict] = None) -> Dict:
    """``meta`` of a deploy checkpoint: where it comes from, what was fused.

    Args:
        report (FusionReport): What the fusion changed.
        source (str): The train-time checkpoint (or a description).
        source_meta (dict, optional): Its ``meta``; dataset_meta, epoch,
            iter and seed are kept.
    """
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
    """Write a fused model's weights and its deploy config beside them.

    The checkpoint holds ``state_dict`` and ``meta`` only (no optimizer).
    Both files are written atomically (temp file + ``os.replace``).

    Args:
        model (nn.Module): A segmentor returned by :func:`fuse_segmentor`.
        cfg (Config, optional): Its training config; the deploy config is
            written to ``OUT`` with suffix ``.py``. None writes no config.
        out (str): Checkpoint path, e.g. ``deploy.pth``.
        meta (dict): From :func:`deploy_meta`.

    Returns:
        tuple[str, str | None]: The checkpoint and config paths.
    """
    if DEPLOY_META_KEY not in meta:
        raise ValueError('meta must come from deploy_meta()')
    leftovers = fusable_modules(model) + [
        name for name, module in model.named_modules() if is_batchnorm(module)
    ] + [name for name in TRAIN_ONLY_HEADS if hasattr(model, name)]
    if leftovers:
        raise ConfigError(
            f'{out}: the model is not in deploy form ({", ".join(leftovers)} '
            'remain); fuse it with fuse_segmentor first')
    cfg_path = _output_path(out, '.py') if cfg is not None else None
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
    atomic_write(out, lambda tmp: torch.save(checkpoint, tmp))
    if cfg is not None:
        atomic_write(cfg_path, _write_text(text))
    return out, cfg_path


def load_config(path: str, cfg_options: Optional[Dict] = None) -> Config:
    """``Config.fromfile`` with a UserError for a missing file."""
    if not osp.isfile(path):
        raise ConfigError(f'{path}: config file not found; check the path')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_segmentor(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` as mmseg's ``init_model`` does, without weights.

    SyncBN becomes BN, as mmengine's Runner does when not distributed.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def load_segmentor(cfg: Config, checkpoint: str) -> Tuple[nn.Module, Dict]:
    """Build the model of ``cfg`` shaped like ``checkpoint`` and load it.

    A deploy checkpoint is loaded into the fused form of the model, so the
    training config works as well as the deploy config; a checkpoint whose
    backbone alone is fused (``branch_reparam`` keys) into a model whose
    backbone is fused. Loading is strict.

    Args:
        cfg (Config): The config (training or deploy).
        checkpoint (str): Path of the checkpoint.

    Returns:
        tuple[nn.Module, dict]: The model in eval mode and the checkpoint.
    """
    ckpt = safe_torch_load(checkpoint)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{checkpoint}: not a checkpoint dict')
    state_dict = checkpoint_state_dict(ckpt)
    model = build_segmentor(cfg)
    if is_deploy_checkpoint(ckpt):
        fuse_segmentor(model, inplace=True)
    elif any('.branch_reparam.' in key for key in state_dict):
        reparameterize_model(model, inplace=True)
    check_state_dict_matches(model, state_dict, checkpoint)
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), ckpt


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
    """Fuse a train-time checkpoint, check it and save its deploy form.

    Args:
        cfg (Config): The training config of ``checkpoint``.
        checkpoint (str): The train-time checkpoint.
        out (str): The deploy checkpoint to write; its config goes to the
            same path with ``.py``.
        shape (Sequence[int]): Random input of the equality check.
        tol (float): See :func:`check_fused_equal`.

    Raises:
        CheckpointError: ``checkpoint`` is already fused (never fused
            twice) or does not match ``cfg``.
        FusionMismatchError: The fused logits differ; nothing is written.
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
            f'({_output_path(checkpoint, ".py")})')
    fused, report = fuse_segmentor(model)
    if not report.changed:
        raise CheckpointError(
            f'{checkpoint}: nothing to fuse, the model of this config is '
            'already in deploy form; use the checkpoint as it is')
    max_abs, rel = check_fused_equal(model, fused, shape, tol)
    meta = deploy_meta(report, checkpoint, ckpt.get('meta'))
    paths = save_deploy_checkpoint(fused, cfg, out, meta)
    return ReparamResult(report, max_abs, rel, *paths)


def segmentor_logits(model: nn.Module, inputs: Tensor) -> Tensor:
    """Logits at input size: ``encode_decode`` on a batch of one size."""
    # mmseg reads only the first meta; one per image would make the batch
    # size a Python int, which torch.export then freezes.
    return model.encode_decode(inputs, [dict(img_shape=inputs.shape[2:])])


def random_inputs(shape: Sequence[int], seed: int = 0) -> Tensor:
    """A reproducible N(0, 1) input, like a normalized image."""
    return torch.randn(
        tuple(shape), generator=torch.Generator().manual_seed(seed))


def relative_error(expected: Tensor, actual: Tensor) -> Tuple[float, float]:
    """Max abs difference, and the same over the largest expected value."""
    diff = (expected.float() - actual.float()).abs().max().item()
    scale = expected.abs().max().item()
    return diff, diff / max(scale, 1e-12)


@torch.no_grad()
def check_fused_equal(reference: nn.Module,
                      fused: nn.Module,
                      shape: Sequence[int] = (1, 3, 64, 128),
                      tol: float = 1e-4) -> Tuple[float, float]:
    """Compare two segmentors' logits on a random input, both in eval mode.

    Args:
        reference (nn.Module): The unfused model (set to eval mode).
        fused (nn.Module): Its fused form.
        shape (Sequence[int]): N, C, H, W of the input. Defaults to
            (1, 3, 64, 128).
        tol (float): Largest allowed max-abs difference relative to the
            largest reference logit. Defaults to 1e-4.

    Returns:
        tuple[float, float]: Max abs difference and its relative value.

    Raises:
        FusionMismatchError: The relative difference exceeds ``tol``.
    """
    inputs = random_inputs(shape)
    expected = segmentor_logits(reference.eval(), inputs)
    diff, rel = relative_error(expected,
                               segmentor_logits(fused.eval(), inputs))
    if not rel <= tol:
        raise FusionMismatchError(
            f'fused logits differ from the unfused model by {diff:.3g} '
            f'({rel:.3g} of the largest logit, tolerance {tol:g}); check '
            'the BN statistics of the checkpoint (near-zero running_var) '
            'or raise the tolerance')
    return diff, rel
