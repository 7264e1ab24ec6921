"""Fuse a whole segmentor into its deploy form, and prove it equal."""
import copy
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule, fuse_conv_bn
from torch import Tensor, nn

from ..compare import relative_error
from ..errors import UserError
from .reparam import fusable_modules, is_batchnorm, reparameterize_model

# Heads that only add a training loss; deploy artifacts leave them out.
TRAIN_ONLY_HEADS = ('auxiliary_head', )


class FusionMismatchError(UserError):
    """A fused or exported model's outputs differ from the unfused one's."""


@dataclass
class FusionReport:
    """What :func:`fuse_segmentor` changed, by module name."""

    blocks: List[str] = field(default_factory=list)  # RepVGG, now one conv
    conv_bn: List[str] = field(default_factory=list)  # ConvModules, BN folded
    dropped: List[str] = field(default_factory=list)  # train-only heads
    # BatchNorms not after a conv, not folded.
    unfused_norms: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.blocks or self.conv_bn or self.dropped)

    def summary(self) -> str:
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
    """Whether mmcv's ``fuse_conv_bn`` folds the ConvModule's BN rightly."""
    order = list(module.order)
    norm = module.norm if module.with_norm else None
    return (norm is not None and is_batchnorm(norm)
            and getattr(norm, 'weight', None) is not None
            and isinstance(module.conv, nn.Conv2d)
            and order.index('norm') == order.index('conv') + 1)


@torch.no_grad()
def fuse_segmentor(model: nn.Module,
                   inplace: bool = False) -> Tuple[nn.Module, FusionReport]:
    """Turn a trained mmseg segmentor (unwrapped; a deep copy unless
    ``inplace``) into its deploy form, exact in eval mode: blocks fused,
    ``conv -> BN`` ConvModules folded, auxiliary head deleted. Returns the
    fused model and a report of what changed."""
    if not inplace:
        model = copy.deepcopy(model)
    report = FusionReport(blocks=fusable_modules(model))
    reparameterize_model(model, inplace=True)
    # Drop before folding, as a segmentor built without them (mmseg's
    # with_auxiliary_head is hasattr-and-not-None).
    report.dropped = [
        name for name in TRAIN_ONLY_HEADS
        if getattr(model, name, None) is not None
    ]
    for name in report.dropped:
        delattr(model, name)
    for name, module in list(model.named_modules()):
        if isinstance(module, ConvModule) and _norm_follows_conv(module):
            fuse_conv_bn(module)
            report.conv_bn.append(name)
    report.unfused_norms = [
        name for name, module in model.named_modules() if is_batchnorm(module)
    ]
    return model, report


def segmentor_logits(model: nn.Module, inputs: Tensor) -> Tensor:
    """Logits at input size: ``encode_decode`` on a batch of one size."""
    # One meta: one per image would make torch.export freeze the batch size.
    return model.encode_decode(inputs, [dict(img_shape=inputs.shape[2:])])


def random_inputs(shape: Sequence[int], seed: int = 0) -> Tensor:
    """A reproducible N(0, 1) input, like a normalized image."""
    return torch.randn(
        tuple(shape), generator=torch.Generator().manual_seed(seed))


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself if it is on the CPU, else a CPU copy of it."""
    if all(t.device.type == 'cpu'
           for t in [*model.parameters(), *model.buffers()]):
        return model
    return copy.deepcopy(model).cpu()


@torch.no_grad()
def check_fused_equal(reference: nn.Module,
                      fused: nn.Module,
                      shape: Sequence[int] = (1, 3, 64, 128),
                      tol: float = 1e-4) -> Tuple[float, float]:
    """Compare the logits of the unfused ``reference`` and its ``fused`` form,
    both set to eval mode, on a random input of ``shape`` (N, C, H, W);
    FusionMismatchError if their max-abs difference exceeds ``tol`` times the
    largest logit. Returns that difference and its relative value."""
    # On the CPU: cuDNN's default TF32 rounding alone exceeds ``tol``.
    reference, fused = _on_cpu(reference.eval()), _on_cpu(fused.eval())
    inputs = random_inputs(shape)
    expected = segmentor_logits(reference, inputs)
    diff, rel = relative_error(expected, segmentor_logits(fused, inputs))
    if not rel <= tol:
        raise FusionMismatchError(
            f'fused logits differ from the unfused model by {diff:.3g} '
            f'({rel:.3g} of the largest logit, tolerance {tol:g}); check '
            'the BN statistics of the checkpoint (near-zero running_var) '
            'or raise the tolerance')
    return diff, rel
