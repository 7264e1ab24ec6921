"""Post-training int8 convs on x86 CPUs: weights per output channel (fused
branches spread their ranges), activations uint8 per tensor (7 bits without
VNNI: the int16 pair sums would saturate). Over oneDNN's ops: torch's PT2E
flow needs torchao and ``torch.compile``, mmseg's inference is eager."""
import copy
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..machine import machine
from . import guard, onednn_int8
from .onednn_int8 import weight_qparams
from .relu import relu_followers

#: Convs with fewer multiply-adds per output stay fp32: the image conv's 27
#: is cheap and the most sensitive to input rounding.
MIN_REDUCTION = 32
#: Stays fp32: the classifier, whose logits decide every label, costs little.
KEEP_FP32 = ('conv_seg', )

Range = Tuple[float, float]


def why_int8_unavailable() -> Optional[str]:
    """Why int8 convs cannot run here, or None (a failed check logs once)."""
    reason = machine().why_not('int8', 'cpu')
    if reason:
        return reason
    problem = guard.int8_problem()
    if guard.usable('int8', "oneDNN's int8 conv ops", problem,
                    'the int8 forms are unavailable'):
        return None
    return f"oneDNN's int8 conv ops are not usable here ({problem})"


def _check_supported() -> None:
    reason = why_int8_unavailable()
    if reason:
        raise ConfigError(f'{reason}; use fp32 here')


def default_activation_bits() -> int:
    """8 on CPUs with VNNI, 7 without (see the module's docstring)."""
    return machine().int8_activation_bits


def activation_qparams(low: float,
                       high: float,
                       bits: int = 8) -> Tuple[float, int]:
    """Scale and zero point of ``bits``-bit uint8 over ``[low, high]``, 0."""
    if not 2 <= bits <= 8:
        raise ValueError(f'activation bits must be 2..8, got {bits}')
    top = 2**bits - 1
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / top or 1.0
    zero_point = int(min(max(round(-low / scale), 0), top))
    return scale, zero_point


def run_batches(handles: List, batches: Iterable[Tensor],
                forward: Callable) -> None:
    """``forward`` on each batch, then the hooks ``handles`` removed."""
    count = 0
    try:
        for count, batch in enumerate(batches, 1):
            forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    if not count:
        raise ConfigError('int8 calibration needs at least one batch')


class ChannelStats:
    """Per-channel min, max and mean of a module's input (a pre-hook) or
    output (a forward hook)."""

    def __init__(self):
        self.low = self.high = None
        self.total = self.count = 0

    def __call__(self, module: nn.Module, args: Tuple, out=None) -> None:
        x = (args[0] if out is None else out).detach().float()
        low, high = x.amin((0, 2, 3)), x.amax((0, 2, 3))
        if self.low is not None:
            low = torch.minimum(self.low, low)
            high = torch.maximum(self.high, high)
        self.low, self.high = low, high
        self.total = self.total + x.sum((0, 2, 3), dtype=torch.float64)
        self.count += x.numel() // x.shape[1]


@torch.no_grad()
def calibration_statistics(model: nn.Module, names: List[str],
                           producers: List[str], batches: Iterable[Tensor],
                           forward: Callable):
    """One pass: each conv's input :class:`ChannelStats`, each producer's
    per-channel output max after ReLU."""
    modules = dict(model.named_modules())
    stats = {name: ChannelStats() for name in names}
    outs = {name: ChannelStats() for name in producers}
    handles = [modules[n].register_forward_pre_hook(stats[n]) for n in names]
    handles += [modules[n].register_forward_hook(outs[n]) for n in producers]
    run_batches(handles, batches, forward)
    return stats, {
        name: out.high.clamp_min(0)
        for name, out in outs.items() if out.high is not None
    }


class Int8Conv2d(nn.Module):
    """A float ``conv`` (zero padding) run by oneDNN in int8, fp32 in and
    out: its input quantized to ``activation_bits`` over the calibrated
    ``input_range`` (min, max); ``relu`` in the kernel."""

    def __init__(self,
                 conv: nn.Conv2d,
                 input_range: Range,
                 relu: bool = False,
                 activation_bits: Optional[int] = None):
        super().__init__()
        _check_supported()
        if conv.padding_mode != 'zeros' or isinstance(conv.padding, str):
            raise ConfigError(f'int8 conv needs numeric zero padding, got '
                              f'{conv.padding_mode}/{conv.padding!r}')
        # nn.Conv2d's geometry, read by code that inspects convs (low-res PSP).
        for attr in ('in_channels', 'out_channels', 'kernel_size', 'stride',
                     'padding', 'dilation', 'groups'):
            setattr(self, attr, getattr(conv, attr))
        self.geometry = (list(self.stride), list(self.padding),
                         list(self.dilation), self.groups)
        self.activation_bits = (
            default_activation_bits()
            if activation_bits is None else activation_bits)
        self.input_scale, self.input_zero_point = activation_qparams(
            *input_range, self.activation_bits)
        # The largest input the top level (2**bits - 1) stands for.
        self._input_max = ((2**self.activation_bits - 1) -
                           self.input_zero_point) * self.input_scale
        qweight, scales = weight_qparams(conv.weight)
        self.register_buffer('weight_int8', qweight)
        self.register_buffer('weight_scale', scales)
        self.register_buffer('weight_zero_point',
                             torch.zeros(len(scales), dtype=torch.long))
        bias = conv.bias.detach().float() if conv.bias is not None else None
        self.register_buffer('bias', bias)
        self.attr = 'relu' if relu else 'none'
        # Packed once, as inductor's freezing does; opaque, so not a buffer.
        self.packed_weight = onednn_int8.prepack(qweight, scales,
                                                 self.input_scale,
                                                 self.input_zero_point,
                                                 self.geometry)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_quantized(self.quantize_input(x))

    def quantize_input(self, x: Tensor) -> Tensor:
        """``x`` as the kernel takes it: uint8, channels_last."""
        # channels_last first: the kernel segfaults on an NCHW view; 7-bit
        # inputs clamped before, as a quint8 tensor has no clamp.
        x = x.float().contiguous(memory_format=torch.channels_last)
        if self.activation_bits < 8:
            x = x.clamp(max=self._input_max)
        return torch.quantize_per_tensor(x, self.input_scale,
                                         self.input_zero_point,
                                         torch.quint8).view(torch.uint8)

    def conv_quantized(self, q: Tensor) -> Tensor:
        """The kernel alone, on :meth:`quantize_input`'s output."""
        return onednn_int8.qconv(q, self.input_scale, self.input_zero_point,
                                 self.packed_weight, self.weight_scale,
                                 self.weight_zero_point, self.bias,
                                 self.geometry, self.attr)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, input_scale={self.input_scale:.3g}, '
                f'input_zero_point={self.input_zero_point}, '
                f'activation_bits={self.activation_bits}, attr={self.attr!r}')


def quantizable_convs(model: nn.Module) -> List[str]:
    """Names of the convs :func:`quantize_int8` would run in int8."""
    return [
        name for name, module in model.named_modules()
        if type(module) is nn.Conv2d and module.padding_mode == 'zeros' and
        not isinstance(module.padding, str) and not name.endswith(KEEP_FP32)
        and module.weight[0].numel() >= MIN_REDUCTION
    ]


@torch.no_grad()
def calibrate_activation_ranges(
        model: nn.Module,
        batches: Iterable[Tensor],
        forward: Callable[[Tensor], object],
        names: Optional[List[str]] = None) -> Dict[str, Range]:
    """Min and max of each conv's input over ``batches`` (each run by
    ``forward``), as ``{conv name: (min, max)}`` for the convs of ``names``
    (None: the quantizable ones) that ran in the fused float ``model``."""
    names = quantizable_convs(model) if names is None else names
    stats, _ = calibration_statistics(model, names, [], batches, forward)
    return {
        name: (float(stat.low.min()), float(stat.high.max()))
        for name, stat in stats.items() if stat.low is not None
    }


def quantize_int8(
        model: nn.Module,
        ranges: Dict[str, Range],
        inplace: bool = False,
        activation_bits: Optional[int] = None) -> Tuple[nn.Module, List[str]]:
    """Run the convs in ``ranges`` (:func:`calibrate_activation_ranges`) of
    a fused fp32 CPU model as :class:`Int8Conv2d`, a ReLU right after one in
    its kernel (its module: ``nn.Identity``); returns the model (a copy
    unless ``inplace``) and the names of the int8 convs."""
    _check_supported()
    if not ranges:
        raise ConfigError('no conv was calibrated: nothing to run in int8')
    model = model if inplace else copy.deepcopy(model)
    followers = relu_followers(model)
    for name, span in ranges.items():
        relu = name in followers
        conv = Int8Conv2d(
            model.get_submodule(name), span, relu, activation_bits)
        model.set_submodule(name, conv)
        if relu:
            owner, act = followers[name]
            setattr(owner, act, nn.Identity())
    return model, sorted(ranges)
