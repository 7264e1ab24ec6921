"""Does this checkpoint fit this model? The one rule, and strict loading."""
import re
from typing import Dict, Optional, Tuple

from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..errors import CheckpointError
from ..models.fuse import FusionReport, fuse_segmentor
from ..models.reparam import fusable_modules, reparameterize_model
from .loading import key_differences
from .safe_load import safe_torch_load

DEPLOY_META_KEY = 'reparam'  # the meta key of a deploy checkpoint
PURPOSES = ('test', 'resume', 'load_from')

_FUSED_BLOCK = '.branch_reparam.'
_TRAIN_TIME_BLOCK = '.branch_3x3.'


def is_deploy_checkpoint(checkpoint: Dict) -> bool:
    """Whether ``checkpoint`` is a deploy checkpoint (``meta['reparam']``)."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return isinstance(meta, dict) and DEPLOY_META_KEY in meta


def checkpoint_state_dict(checkpoint: Dict) -> Dict[str, Tensor]:
    """The model weights of a checkpoint, without DDP's ``module.`` prefix."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}


def _has_blocks(keys, marker: str) -> bool:
    return any(marker in key for key in keys)


def check_state_dict_matches(model: nn.Module, state_dict: Dict[str, Tensor],
                             source: str) -> None:
    """Refuse a state dict without exactly the model's keys and shapes."""
    missing, unexpected, resized = key_differences(model.state_dict(),
                                                   state_dict)
    problems = [
        f'{len(keys)} {what} keys (e.g. {", ".join(sorted(keys)[:3])})'
        for what, keys in (('missing', missing), ('unexpected', unexpected),
                           ('resized', resized)) if keys
    ]
    if problems:
        raise CheckpointError(
            f'{source} does not match the model of this config: '
            f'{"; ".join(problems)}. Use the config the checkpoint was made '
            'with (for a deploy checkpoint: the .py written beside it)')


def fit_to_checkpoint(model: nn.Module,
                      checkpoint: Dict,
                      source: str,
                      reshape: bool = True) -> Optional[FusionReport]:
    """Shape the segmentor ``model`` (unwrapped; the meta device is fine) in
    place to a fused ``checkpoint`` (or state dict) if ``reshape``, then
    check every key; returns what fusing changed, or None."""
    state_dict = checkpoint_state_dict(checkpoint)
    report = None
    if reshape and is_deploy_checkpoint(checkpoint):
        _, report = fuse_segmentor(model, inplace=True)
    elif reshape and _has_blocks(state_dict, _FUSED_BLOCK):
        report = FusionReport(blocks=fusable_modules(model))
        reparameterize_model(model, inplace=True)
    check_state_dict_matches(model, state_dict, source)
    return report if report is not None and report.changed else None


def check_checkpoint_fits(model: Optional[nn.Module],
                          checkpoint: Dict,
                          source: str,
                          purpose: str = 'test',
                          reshape: bool = True) -> Optional[FusionReport]:
    """The rule: may ``checkpoint`` be loaded into ``model`` for ``purpose``?

    Args:
        model (nn.Module, optional): None checks the checkpoint alone.
        checkpoint (dict): The loaded checkpoint.
        source (str): Its name, for the messages.
        purpose (str): ``'test'``, ``'resume'`` or ``'load_from'`` (heads
            may differ).
        reshape (bool): Fuse the model to a fused checkpoint.

    Returns:
        FusionReport | None: What fusing the model to the checkpoint changed.
    """
    if purpose not in PURPOSES:
        raise ValueError(f'purpose must be one of {PURPOSES}, not {purpose}')
    if not isinstance(checkpoint, dict) or not isinstance(
            checkpoint.get('state_dict', checkpoint), dict):
        raise CheckpointError(
            f'{source}: not a model checkpoint (no state_dict); pass a '
            'checkpoint saved by tools/train.py or tools/reparam.py')
    state_dict = checkpoint_state_dict(checkpoint)
    if is_deploy_checkpoint(checkpoint) and purpose != 'test':
        raise CheckpointError(
            f'{source} is a deploy checkpoint (branches fused, BatchNorms '
            f'folded) and cannot be trained from; for {purpose} pass the '
            'train-time checkpoint it was made from (WORK_DIR/epoch_N.pth)')
    if model is None:
        return None
    if (_has_blocks(model.state_dict(), _FUSED_BLOCK)
            and _has_blocks(state_dict, _TRAIN_TIME_BLOCK)):
        raise CheckpointError(
            f'{source} is a train-time checkpoint, but this config builds '
            'the deploy form of the model (fused RepVGG blocks). Test it '
            'with its training config (the ReparamHook fuses the model '
            'after loading), or make a deploy checkpoint first: python '
            f'tools/reparam.py TRAIN_CONFIG {source} OUT.pth, then use '
            'OUT.pth with the OUT.py written beside it')
    if purpose == 'load_from':  # fine-tuning: the heads may differ
        holder = nn.Module()
        holder.backbone = model.backbone
        model = holder
        state_dict = {
            k: v
            for k, v in state_dict.items() if k.startswith('backbone.')
        }
        checkpoint = dict(state_dict=state_dict, meta=checkpoint.get('meta'))
    return fit_to_checkpoint(model, checkpoint, source, reshape=reshape)


def build_segmentor(cfg) -> nn.Module:
    """``cfg.model`` as mmseg's ``init_model`` builds it (SyncBN as BN)."""
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def load_segmentor(cfg, checkpoint: str) -> Tuple[nn.Module, Dict]:
    """Build the model of ``cfg`` (training or deploy) shaped like the
    ``checkpoint`` file (a deploy one fuses it), load it strictly; returns
    the model in eval mode and the checkpoint."""
    ckpt = safe_torch_load(checkpoint)
    model = build_segmentor(cfg)
    check_checkpoint_fits(model, ckpt, checkpoint)
    model.load_state_dict(checkpoint_state_dict(ckpt), strict=True)
    return model.eval(), ckpt
