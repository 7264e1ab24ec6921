"""A 3x3 conv that runs NNPACK's Winograd where that beats oneDNN's direct
conv, chosen per input shape (:mod:`.tuning`): no fixed rule predicts it.
Written by hand only what NNPACK lacks: groups (one call per group) and
dilation (:mod:`.space_to_batch`). Both NNPACK routes are private torch API
behind :mod:`.guard`; where unusable, the conv runs direct.
"""
import functools
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import guard, nnpack, tuning
from .nnpack_op import torch_op_conv
from .space_to_batch import space_to_batch_conv

#: Grouped convs with more groups than this stay direct: one NNPACK call
#: per group cannot pay once the groups are narrow (depthwise convs).
MAX_GROUPS = 8


def _nnpack_usable() -> bool:
    """:func:`.guard.nnpack_problem` is None; logs one line, once, when
    not."""
    return guard.usable('nnpack', 'NNPACK', guard.nnpack_problem(),
                        'Winograd convs run direct (F.conv2d)')


def _c_api_usable() -> bool:
    """:func:`.guard.c_api_problem` is None; logs one line, once, when
    not (Winograd then runs through torch's op: slower, still exact)."""
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
    """A stride-1 undilated conv through NNPACK.

    With a precomputed ``transform`` NNPACK's C entry point runs on it
    (:func:`.nnpack.winograd_conv`, ReLU fused); without one, torch's op
    (:func:`.nnpack_op.torch_op_conv`, one call per image and group).

    Args:
        x (Tensor): ``(N, C, H, W)`` float32 CPU input.
        weight (Tensor): ``(O, C / groups, kH, kW)``.
        bias (Tensor, optional): ``(O, )``.
        padding (Sequence[int]): Zero padding ``(pH, pW)``.
        groups (int): As ``F.conv2d``'s.
        relu (bool): Apply ReLU to the result.
        transform (KernelTransform, optional): ``weight``'s, with
            ``groups``; None uses torch's op.

    Returns:
        Tensor: ``F.conv2d(x, weight, bias, padding=padding, groups=groups)``
        (then ReLU if asked) up to rounding.
    """
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
    """Why :func:`~.winograd_convs.winograd_convs` leaves a module alone,
    or None.

    Only plain ``nn.Conv2d`` (not subclasses, whose forward may differ) 3x3
    convs of stride 1 with numeric zero padding and at most
    :data:`MAX_GROUPS` groups are replaced. Strided convs are not: NNPACK's
    Winograd kernels are stride 1 only, so they would always run direct.

    Args:
        module (nn.Module): Any module.

    Returns:
        Optional[str]: None if eligible, else a short reason.
    """
    if type(module) is not nn.Conv2d:
        return 'not a plain nn.Conv2d'
    return _conv_problem(module)


class WinogradConv2d(nn.Conv2d):
    """A 3x3 conv that runs the fastest of oneDNN and NNPACK per shape.

    The first forward at each input shape picks the algorithm
    (:meth:`_choose`): a choice found in the on-disk cache of this machine
    (:mod:`.tuning`) is reused without timing; otherwise every candidate
    is timed briefly and the fastest by median time kept (and cached on
    disk when ``cache``). Either way a
    Winograd result outside :data:`.nnpack.TOLERANCE` of the direct one is
    rejected, with one log line. :attr:`choices` holds the outcome per
    shape; later forwards at that shape run it without timing anything.

    It is an ``nn.Conv2d`` built from the source conv's hyper-parameters
    and sharing its parameters, so code that inspects convs, state dicts
    (same keys) and BN folding see the same conv.

    Candidates: ``'direct'`` (``F.conv2d``, oneDNN) always; ``'winograd'``
    (:func:`nnpack_conv`, groups split by hand) for undilated convs;
    ``'winograd_s2b'`` (:func:`.space_to_batch.space_to_batch_conv`) for
    dilated ones. Winograd runs on the kernel's transform, made at its
    first use and kept (:class:`.nnpack.KernelTransform`, 64/9 of the
    weight's memory; made again if the weight changes) where NNPACK's C
    entry point works, else through torch's op.

    With ``relu=True`` the module computes ``relu(conv(x))``: NNPACK
    applies it in its output transform, the direct path in place after the
    conv.

    Inputs NNPACK cannot or should not take run direct, without choosing:
    anything but a 4-D float32 CPU tensor, channels-last inputs (kept in
    their layout for oneDNN), inputs under CPU autocast, and forwards under
    tracing, scripting, ONNX export, ``torch.compile`` or fx tracing (so
    that exports record a plain conv). So does everything when
    :func:`.guard.nnpack_problem` finds NNPACK unusable. A forced algorithm
    (``algorithm='winograd'``) still falls back then, but is not timed or
    checked per shape.

    Args:
        conv (nn.Conv2d): The conv to run; its parameters are shared, not
            copied. Must be eligible (:func:`ineligible_reason`) apart from
            being a subclass: a subclass is taken as a plain conv.
        algorithm (str): ``'auto'`` (choose per shape) or one of this
            conv's candidates to force it, for tests and ablations.
        relu (bool): Apply ReLU to the output.
        cache (bool): Read and write choices in the on-disk cache.
    """

    def __init__(self,
                 conv: nn.Conv2d,
                 algorithm: str = 'auto',
                 relu: bool = False,
                 cache: bool = True) -> None:
        reason = _conv_problem(conv)
        if reason is not None:
            raise ValueError(f'WinogradConv2d cannot run this conv: {reason}')
        # Built on the meta device: no weight is allocated or initialized,
        # and the source conv's parameters are registered instead.
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
        #: Input shape -> dict(choice=..., ms={candidate: median ms}), plus
        #: ``rejected={candidate: reason}`` where one failed and
        #: ``source='cache'`` where not measured here.
        self.choices: Dict[Tuple[int, ...], dict] = {}
        self.algorithm = algorithm
        self.relu = relu
        self.cache = cache
        self._transform: Optional[nnpack.KernelTransform] = None

    def __getstate__(self):
        # Deep copies and pickles leave the kernel transform behind (it is
        # made again on first use; its buffer addresses would be stale).
        state = super().__getstate__()
        state['_transform'] = None
        return state

    def kernel_transform(self) -> Optional[nnpack.KernelTransform]:
        """The weight's Winograd transform (made now if missing or stale),
        or None where NNPACK's C entry point is not usable."""
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
        if tuple(self.dilation) == (1, 1):
            return ('direct', 'winograd')
        return ('direct', 'winograd_s2b')

    @property
    def algorithm(self) -> str:
        """``'auto'`` or the forced algorithm; setting it forgets
        :attr:`choices`."""
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
        """Bytes held by the kernel transform (0 before the first
        Winograd call): weights the model keeps besides its parameters."""
        return 0 if self._transform is None else self._transform.nbytes

    def extra_repr(self) -> str:
        relu = ', relu=True' if self.relu else ''
        return f'{super().extra_repr()}, algorithm={self.algorithm}{relu}'

    def _run(self, algorithm: str, x: Tensor) -> Tensor:
        if algorithm in ('winograd', 'winograd_s2b'):
            conv = functools.partial(
                nnpack_conv, relu=self.relu, transform=self.kernel_transform())
            if algorithm == 'winograd':
                return conv(x, self.weight, self.bias, self.padding,
                            self.groups)
            # ReLU commutes with the sub-grid rearrangement.
            return space_to_batch_conv(
                x,
                self.weight,
                self.bias,
                self.padding,
                self.dilation,
                self.groups,
                conv=conv)
        out = self._conv_forward(x, self.weight, self.bias)
        return F.relu(out, inplace=True) if self.relu else out

    def _direct_only(self, x: Tensor) -> bool:
        """Whether this input must run direct (see the class docstring)."""
        if isinstance(x, torch.fx.Proxy):
            return True
        # The legacy ONNX exporter traces; the dynamo one compiles.
        if (torch.jit.is_scripting() or torch.jit.is_tracing()
                or torch.compiler.is_compiling()):
            return True
        if (x.dim() != 4 or x.numel() == 0 or x.device.type != 'cpu'
                or x.dtype != torch.float32 or self.weight.device.type != 'cpu'
                or self.weight.dtype != torch.float32
                or torch.is_autocast_enabled('cpu')):
            return True
        if (not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return True
        return not _nnpack_usable()

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
        entry, out = self._choose(x)
        self.choices[key] = entry
        return out

    def _choose(self, x: Tensor) -> Tuple[dict, Tensor]:
        """The :attr:`choices` entry for ``x``'s shape and its output: the
        disk cache's, else measured (then cached)."""
        key = tuple(x.shape)
        if self.cache:
            found = tuning.lookup(self, key)
            if found is not None:
                return tuning.adopt(self, x, found, 'cache')
        entry, out = self._measure(x)
        if self.cache:
            tuning.store(self, key, entry)
        return entry, out

    def _measure(self, x: Tensor) -> Tuple[dict, Tensor]:
        """Time and check every candidate at ``x``'s shape
        (:func:`.tuning.measure`)."""
        return tuning.measure(self, x)
