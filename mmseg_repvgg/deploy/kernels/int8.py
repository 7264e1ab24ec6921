"""Post-training int8 convolutions of a fused segmentor on x86 CPUs.

Weights symmetric per output channel (a fused kernel sums three branches,
so channel ranges differ widely); activations uint8 per tensor from
calibration min/max, 7 bits without VNNI (the kernel's int16 pair sums
would saturate); fp32 between convs. Written by hand over oneDNN's ops
(:mod:`.onednn_int8`) because torch's maintained flow (PT2E) needs torchao
and ``torch.compile``; staying in PyTorch keeps mmseg's own inference.
"""
import copy
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..machine import machine
from . import guard, onednn_int8
from .relu import relu_followers

#: Convs with fewer multiply-adds per output than this stay fp32: the image
#: conv (3 channels x 3 x 3 = 27), which is both cheap and the most
#: sensitive to input rounding.
MIN_REDUCTION = 32
#: Module-name suffixes that stay fp32: the classifier, whose logits decide
#: every label and which costs next to nothing.
KEEP_FP32 = ('conv_seg', )

Range = Tuple[float, float]


def why_int8_unavailable() -> Optional[str]:
    """Why int8 convs cannot run here (the machine, then the ops' check,
    whose failure is logged once), or None."""
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
    """uint8 scale and zero point covering ``[low, high]`` and 0 with
    ``bits`` bits (``2**bits`` levels from 0)."""
    if not 2 <= bits <= 8:
        raise ValueError(f'activation bits must be 2..8, got {bits}')
    top = 2**bits - 1
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / top or 1.0
    zero_point = int(min(max(round(-low / scale), 0), top))
    return scale, zero_point


def weight_qparams(weight: Tensor) -> Tuple[Tensor, Tensor]:
    """Symmetric per-output-channel int8: ``(int8 weight, fp32 scales)``."""
    weight = weight.detach().float()
    scales = weight.abs().amax(dim=tuple(range(1, weight.dim()))) / 127
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    shape = (-1, ) + (1, ) * (weight.dim() - 1)
    qweight = torch.round(weight / scales.view(shape)).clamp(-127, 127)
    return qweight.to(torch.int8), scales


class Int8Conv2d(nn.Module):
    """A 2D conv run by oneDNN in int8: fp32 in, fp32 out.

    Args:
        conv (nn.Conv2d): The float conv (zero padding); its weights are
            quantized per output channel.
        input_range (tuple[float, float]): Calibrated min and max of the
            conv's input.
        relu (bool): Apply ReLU in the kernel. Defaults to False.
        activation_bits (int, optional): Bits of the quantized input: 8,
            or 7 on CPUs without VNNI. Defaults to what this machine needs
            (:func:`default_activation_bits`).
    """

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
        self.in_channels, self.out_channels = (conv.in_channels,
                                               conv.out_channels)
        # nn.Conv2d's geometry attributes, read by code that inspects convs
        # (e.g. the low-res PSP bottleneck's padding offsets).
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self.groups = conv.groups
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
        # oneDNN's blocked layout of the weight, made once (as inductor's
        # freezing does); an opaque tensor, so not a buffer.
        self.packed_weight = onednn_int8.prepack(qweight, scales,
                                                 self.input_scale,
                                                 self.input_zero_point,
                                                 self._geometry())

    def _geometry(self) -> Tuple[List[int], List[int], List[int], int]:
        return (list(self.stride), list(self.padding), list(self.dilation),
                self.groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_quantized(self.quantize_input(x))

    def quantize_input(self, x: Tensor) -> Tensor:
        """``x`` as the kernel takes it: uint8, channels_last."""
        # quantize_per_tensor is one vectorized pass (it saturates to
        # 0..255); the quint8 result is viewed, not copied, as the plain uint8
        # the kernel takes. With 7 bits the calibrated range maps to 0..127,
        # and larger inputs are clamped first so that none exceeds 127 (the
        # quantized tensor itself has no clamp kernel). The kernel works in
        # channels_last (its output is channels_last too); an NCHW quint8
        # view crashes it (segfault), so convert first: a no-op
        # from the second int8 conv on.
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
                                 self._geometry(), self.attr)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, '
                f'input_scale={self.input_scale:.3g}, '
                f'input_zero_point={self.input_zero_point}, '
                f'activation_bits={self.activation_bits}, '
                f'attr={self.attr!r}')


def quantizable_convs(model: nn.Module) -> List[str]:
    """Names of the convs :func:`quantize_int8` would run in int8."""
    names = []
    for name, module in model.named_modules():
        if (type(module) is nn.Conv2d and module.padding_mode == 'zeros'
                and not isinstance(module.padding, str)
                and not name.endswith(KEEP_FP32) and module.in_channels //
                module.groups * module.kernel_size[0] * module.kernel_size[1]
                >= MIN_REDUCTION):
            names.append(name)
    return names


@torch.no_grad()
def calibrate_activation_ranges(
        model: nn.Module,
        batches: Iterable[Tensor],
        forward: Callable[[Tensor], object],
        names: Optional[List[str]] = None) -> Dict[str, Range]:
    """Min and max of each quantizable conv's input over ``batches``.

    Args:
        model (nn.Module): The float model (fused, eval mode).
        batches (Iterable[Tensor]): Inputs as ``forward`` takes them.
        forward (callable): Runs ``model`` on one batch.
        names (list[str], optional): Convs to observe. Defaults to
            :func:`quantizable_convs`.

    Returns:
        dict: ``{conv name: (min, max)}`` for the convs that ran.
    """
    names = quantizable_convs(model) if names is None else names
    modules = dict(model.named_modules())
    ranges: Dict[str, Range] = {}

    def observer(name):

        def hook(module, args):
            low, high = map(float, torch.aminmax(args[0].detach()))
            old = ranges.get(name, (low, high))
            ranges[name] = (min(old[0], low), max(old[1], high))

        return hook

    handles = [
        modules[name].register_forward_pre_hook(observer(name))
        for name in names
    ]
    try:
        count = 0
        for batch in batches:
            forward(batch)
            count += 1
    finally:
        for handle in handles:
            handle.remove()
    if not count:
        raise ConfigError('int8 calibration needs at least one batch')
    return ranges


def quantize_int8(
        model: nn.Module,
        ranges: Dict[str, Range],
        inplace: bool = False,
        activation_bits: Optional[int] = None) -> Tuple[nn.Module, List[str]]:
    """Replace the calibrated convs of ``model`` by :class:`Int8Conv2d`.

    A ReLU that directly follows a replaced conv is applied by the kernel
    and its module becomes ``nn.Identity``.

    Args:
        model (nn.Module): The fused float model (fp32, CPU).
        ranges (dict): From :func:`calibrate_activation_ranges`.
        inplace (bool): Change ``model`` itself. Defaults to False (a copy).
        activation_bits (int, optional): See :class:`Int8Conv2d`; defaults
            to what this machine needs.

    Returns:
        tuple: The model and the names of the convs now in int8.
    """
    _check_supported()
    if not ranges:
        raise ConfigError('no conv was calibrated: nothing to run in int8')
    model = model if inplace else copy.deepcopy(model)
    followers = relu_followers(model)
    for name, input_range in ranges.items():
        relu = name in followers
        model.set_submodule(
            name,
            Int8Conv2d(
                model.get_submodule(name), input_range, relu, activation_bits))
        if relu:
            owner, act = followers[name]
            setattr(owner, act, nn.Identity())
    return model, sorted(ranges)
