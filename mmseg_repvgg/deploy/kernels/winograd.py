"""A 3x3 conv that runs NNPACK's Winograd where that beats oneDNN's direct
conv, chosen per input shape: no fixed rule predicts it."""
import functools
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import guard, nnpack, tuning
from .nnpack_op import torch_op_conv
from .space_to_batch import space_to_batch_conv

#: More groups stay direct: one NNPACK call per narrow group cannot pay.
MAX_GROUPS = 8


def _nnpack_usable() -> bool:
    return guard.usable('nnpack', 'NNPACK', guard.nnpack_problem(),
                        'Winograd convs run direct (F.conv2d)')


def _c_api_usable() -> bool:
    return guard.usable(
        'c_api', "NNPACK's C entry point", guard.c_api_problem(),
        'Winograd convs call torch._nnpack_spatial_convolution, which '
        'transforms every kernel on every call')


def nnpack_conv(x: Tensor,
                weight: Tensor,
                bias: Optional[Tensor],
                padding: Sequence[int],
                groups: int = 1,
                relu: bool = False,
                transform: Optional[nnpack.KernelTransform] = None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, groups=groups)`` (ReLU
    if asked) by NNPACK: its C entry point on ``transform``, else torch's."""
    if transform is not None:
        return nnpack.winograd_conv(x, transform, bias, padding, relu)
    out = torch_op_conv(x, weight, bias, padding, groups)
    return out.relu_() if relu else out


def _conv_problem(conv: nn.Module) -> Optional[str]:
    """Why a conv's hyper-parameters rule NNPACK out, or None."""
    if not isinstance(conv, nn.Conv2d):
        return 'not an nn.Conv2d'
    if tuple(conv.kernel_size) != (3, 3):
        return f'kernel {tuple(conv.kernel_size)} is not 3x3'
    if tuple(conv.stride) != (1, 1):
        return f'stride {tuple(conv.stride)} is not 1'
    if conv.padding_mode != 'zeros':
        return f'padding mode {conv.padding_mode!r} is not zeros'
    if isinstance(conv.padding, str):
        return f'padding {conv.padding!r} is not numeric'
    if conv.groups > MAX_GROUPS:
        return f'{conv.groups} groups (more than {MAX_GROUPS})'
    return None


def ineligible_reason(module: nn.Module) -> Optional[str]:
    """Why :func:`~.winograd_convs.winograd_convs` leaves a module alone
    (a subclass of ``nn.Conv2d`` may differ), or None."""
    if type(module) is not nn.Conv2d:
        return 'not a plain nn.Conv2d'
    return _conv_problem(module)


class WinogradConv2d(nn.Conv2d):
    """An eligible 3x3 ``conv`` (its parameters shared) that runs, per input
    shape, the fastest of ``'direct'`` (oneDNN) and ``'winograd'`` (NNPACK;
    ``'winograd_s2b'`` if dilated), as cached (``cache``: :mod:`.tuning`'s
    file) or measured (outside :data:`.nnpack.TOLERANCE` of direct:
    rejected), or the ``algorithm`` forced; ``relu`` fused. It runs direct
    on anything but a 4-D float32 CPU tensor, on channels-last inputs, under
    autocast, tracing, scripting, export, compile and fx, and everywhere
    when NNPACK is unusable."""

    def __init__(self,
                 conv: nn.Conv2d,
                 algorithm: str = 'auto',
                 relu: bool = False,
                 cache: bool = True) -> None:
        reason = _conv_problem(conv)
        if reason is not None:
            raise ValueError(f'WinogradConv2d cannot run this conv: {reason}')
        # On the meta device: no weight is allocated; conv's are registered.
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device='meta',
            dtype=conv.weight.dtype)
        self.weight = conv.weight
        if conv.bias is not None:
            self.bias = conv.bias
        self.train(conv.training)
        #: Input shape -> dict(choice, ms[, rejected][, source='cache']).
        self.choices: Dict[Tuple[int, ...], dict] = {}
        self.algorithm = algorithm
        self.relu = relu
        self.cache = cache
        self._transform: Optional[nnpack.KernelTransform] = None

    def __getstate__(self):
        # Copies drop the transform: its buffer addresses would be stale.
        state = super().__getstate__()
        state['_transform'] = None
        return state

    def kernel_transform(self) -> Optional[nnpack.KernelTransform]:
        """The weight's transform (remade if stale), or None without C API."""
        if not _c_api_usable():
            return None
        if (self._transform is None
                or not self._transform.matches(self.weight, self.groups)):
            self._transform = None  # free the old one before the new
            self._transform = nnpack.KernelTransform(self.weight, self.groups)
        return self._transform

    @property
    def route(self) -> str:
        """How Winograd runs here: ``'c_api'`` or ``'torch_op'``."""
        return 'c_api' if _c_api_usable() else 'torch_op'

    @property
    def candidates(self) -> Tuple[str, ...]:
        """The algorithms this conv can run."""
        dilated = tuple(self.dilation) != (1, 1)
        return ('direct', 'winograd_s2b' if dilated else 'winograd')

    @property
    def algorithm(self) -> str:
        """``'auto'`` or the forced one; setting it forgets :attr:`choices`."""
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value: str) -> None:
        if value != 'auto' and value not in self.candidates:
            raise ValueError(
                f'algorithm must be auto or one of {self.candidates} for '
                f'this conv (dilation {tuple(self.dilation)}), not {value!r}')
        self._algorithm = value
        self.choices = {}

    @property
    def transform_nbytes(self) -> int:
        """Bytes the kernel transform holds besides the parameters."""
        return 0 if self._transform is None else self._transform.nbytes

    def extra_repr(self) -> str:
        relu = ', relu=True' if self.relu else ''
        return f'{super().extra_repr()}, algorithm={self.algorithm}{relu}'

    def _run(self, algorithm: str, x: Tensor) -> Tensor:
        if algorithm not in ('winograd', 'winograd_s2b'):
            out = self._conv_forward(x, self.weight, self.bias)
            return F.relu(out, inplace=True) if self.relu else out
        conv = functools.partial(
            nnpack_conv, relu=self.relu, transform=self.kernel_transform())
        if algorithm == 'winograd':
            return conv(x, self.weight, self.bias, self.padding, self.groups)
        # ReLU commutes with the sub-grid rearrangement.
        return space_to_batch_conv(
            x,
            self.weight,
            self.bias,
            self.padding,
            self.dilation,
            self.groups,
            conv=conv)

    def _direct_only(self, x: Tensor) -> bool:
        # The legacy ONNX exporter traces; the dynamo one compiles.
        return (isinstance(x, torch.fx.Proxy) or torch.jit.is_scripting()
                or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or x.dim() != 4 or x.numel() == 0 or x.device.type != 'cpu'
                or x.dtype != torch.float32 or self.weight.device.type != 'cpu'
                or self.weight.dtype != torch.float32
                or torch.is_autocast_enabled('cpu')
                or (not x.is_contiguous()
                    and x.is_contiguous(memory_format=torch.channels_last))
                or not _nnpack_usable())

    def forward(self, x: Tensor) -> Tensor:
        if self._direct_only(x):
            return self._run('direct', x)
        key = tuple(x.shape)
        entry = self.choices.get(key)
        if entry is not None:
            return self._run(entry['choice'], x)
        if self.algorithm != 'auto':
            self.choices[key] = dict(choice=self.algorithm, ms={})
            return self._run(self.algorithm, x)
        found = tuning.lookup(self, key) if self.cache else None
        if found is not None:
            entry, out = tuning.adopt(self, x, found, 'cache')
        else:
            entry, out = self._measure(x)
            if self.cache:
                tuning.store(self, key, entry)
        self.choices[key] = entry
        return out

    def _measure(self, x: Tensor) -> Tuple[dict, Tensor]:
        return tuning.measure(self, x)
