"""NNPACK's own Winograd entry point, each kernel transformed once.

torch's op recomputes the kernel transform on every call and has no fused
ReLU; NNPACK (shipped inside ``libtorch_cpu``) can precompute it, so this
module binds ``nnp_convolution_inference`` with ``ctypes``. Private: a
changed struct would crash, so :func:`check_c_api` runs in a child process
first (:mod:`.guard`). Imports only torch, so the child can load it alone.
"""
import ctypes
import functools
import os
import threading
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...compare import norm_error

# From NNPACK's include/nnpack.h (frozen since 2019).
_WT8X8 = 3  # nnp_convolution_algorithm_wt8x8: Winograd F(6x6, 3x3)
_PRECOMPUTE, _REUSE = 2, 3  # nnp_convolution_transform_strategy_*
_IDENTITY, _RELU = 0, 1  # nnp_activation_*
_STATUS = {
    2: 'invalid batch size',
    3: 'invalid channels',
    4: 'invalid input channels',
    5: 'invalid output channels',
    10: 'invalid input size',
    11: 'invalid input stride',
    12: 'invalid input padding',
    13: 'invalid kernel size',
    16: 'invalid algorithm',
    17: 'invalid transform strategy',
    20: 'unsupported input size',
    22: 'unsupported input padding',
    23: 'unsupported kernel size',
    26: 'unsupported algorithm',
    27: 'unsupported transform strategy',
    28: 'unsupported activation',
    50: 'uninitialized',
    51: 'unsupported hardware',
    52: 'out of memory',
    53: 'insufficient buffer',
    54: 'misaligned buffer'
}
#: NNPACK requires its buffers (transform, workspace) 64-byte aligned.
_ALIGN = 64
#: NNPACK's input padding must be smaller than the kernel.
MAX_PADDING = 2
#: Relative error (Frobenius norm) a Winograd result may have against
#: ``F.conv2d``. Winograd's transforms round differently from a direct sum,
#: so results are not bit-equal, but they are far inside this bound.
TOLERANCE = 1e-4


def pad_beyond_limit(x: Tensor,
                     padding: Sequence[int]) -> Tuple[Tensor, List[int]]:
    """Pad ``x`` explicitly by whatever of ``padding`` exceeds
    :data:`MAX_PADDING`; returns it and the padding left for NNPACK."""
    pad_h, pad_w = padding
    extra_h = max(pad_h - MAX_PADDING, 0)
    extra_w = max(pad_w - MAX_PADDING, 0)
    if extra_h or extra_w:
        x = F.pad(x, (extra_w, extra_w, extra_h, extra_h))
    return x, [pad_h - extra_h, pad_w - extra_w]


class _Size(ctypes.Structure):
    _fields_ = [('width', ctypes.c_size_t), ('height', ctypes.c_size_t)]


class _Padding(ctypes.Structure):
    _fields_ = [(side, ctypes.c_size_t)
                for side in ('top', 'right', 'bottom', 'left')]


class NNPackError(RuntimeError):
    """NNPACK returned a status other than success."""


def _library_path() -> str:
    return os.path.join(
        os.path.dirname(torch.__file__), 'lib', 'libtorch_cpu.so')


@functools.lru_cache(maxsize=None)
def _api():
    """``(nnp_convolution_inference, pthreadpool_create)`` from torch's
    library, NNPACK initialized; raises OSError/AttributeError if absent."""
    lib = ctypes.CDLL(_library_path())
    conv = lib.nnp_convolution_inference
    conv.restype = ctypes.c_int
    conv.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t, _Size,
        _Padding, _Size, _Size, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t), ctypes.c_int, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_void_p
    ]
    pool = lib.pthreadpool_create
    pool.restype = ctypes.c_void_p
    pool.argtypes = [ctypes.c_size_t]
    status = lib.nnp_initialize()
    if status != 0:
        raise NNPackError(f'nnp_initialize: {_STATUS.get(status, status)}')
    return conv, pool


@functools.lru_cache(maxsize=None)
def _threadpool(threads: int) -> int:
    """A pthreadpool of ``threads`` threads, kept for the process (torch's
    own pool is not exported; this one follows ``torch.get_num_threads``)."""
    return _api()[1](threads)


#: The profiler's name for these convs (the benchmark counts it as conv
#: time, like ``aten::convolution``).
WINOGRAD_PROFILER_NAME = 'nnpack::winograd_conv'


def _call(strategy: int, cin: int, cout: int, hw: Sequence[int],
          padding: _Padding, x: Optional[int], kernel: int,
          bias: Optional[int], out: Optional[int], workspace: Optional[int],
          size: ctypes.c_size_t, relu: bool) -> None:
    status = _api()[0](_WT8X8, strategy, cin,
                       cout, _Size(hw[1], hw[0]), padding, _Size(3, 3),
                       _Size(1, 1), x, kernel, bias, out, workspace,
                       ctypes.byref(size), _RELU if relu else _IDENTITY, None,
                       _threadpool(torch.get_num_threads()), None)
    if status != 0:
        raise NNPackError(f'nnp_convolution_inference: '
                          f'{_STATUS.get(status, status)}')


class _Aligned:
    """A byte buffer with a 64-byte aligned address inside it."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.storage = torch.empty(nbytes + _ALIGN, dtype=torch.uint8)
        base = self.storage.data_ptr()
        self.ptr = base + (-base) % _ALIGN


_workspaces = threading.local()


def _workspace(nbytes: int) -> _Aligned:
    """One scratch buffer per thread, grown as needed: consecutive convs
    reuse it instead of NNPACK allocating (and faulting in) its own."""
    buf = getattr(_workspaces, 'buffer', None)
    if buf is None or buf.nbytes < nbytes:
        buf = _workspaces.buffer = _Aligned(nbytes)
    return buf


class KernelTransform:
    """The Winograd transforms of a 3x3 kernel, one per group.

    Made once from a weight and reused for any input size (NNPACK's layout
    depends only on the channels and the CPU's caches). It costs
    ``64 / 9`` times the weight's memory (8 x 8 transformed taps per 3 x 3).

    Args:
        weight (Tensor): ``(O, C / groups, 3, 3)`` float32 CPU.
        groups (int): As ``F.conv2d``'s; each group its own transform.
    """

    def __init__(self, weight: Tensor, groups: int = 1):
        self.groups = groups
        self.out_per_group = weight.shape[0] // groups
        self.in_per_group = weight.shape[1]
        self.key = _weight_key(weight)
        weight = weight.detach().contiguous()
        self.buffers = []
        for g in range(groups):
            kernel = weight[g * self.out_per_group:(g + 1) *
                            self.out_per_group]
            size = ctypes.c_size_t(0)
            # Any input size gives the same transform; NNPACK wants one.
            shape, pad = (8, 8), _Padding(1, 1, 1, 1)
            _call(_PRECOMPUTE, self.in_per_group, self.out_per_group, shape,
                  pad, None, kernel.data_ptr(), None, None, None, size, False)
            buf = _Aligned(size.value)
            _call(_PRECOMPUTE,
                  self.in_per_group, self.out_per_group, shape, pad, None,
                  kernel.data_ptr(), None, None, buf.ptr, size, False)
            self.buffers.append(buf)

    @property
    def nbytes(self) -> int:
        return sum(buf.nbytes for buf in self.buffers)

    def matches(self, weight: Tensor, groups: int) -> bool:
        """Whether this transform is still that of ``weight``: same
        storage, not written to since (a loaded state dict bumps the
        version, a deep copy has other storage)."""
        return groups == self.groups and _weight_key(weight) == self.key


def _weight_key(weight: Tensor):
    # Inference tensors keep no version counter; only their storage tells.
    version = None if weight.is_inference() else weight._version
    return (weight.data_ptr(), version, tuple(weight.shape))


def winograd_conv(x: Tensor,
                  transform: KernelTransform,
                  bias: Optional[Tensor],
                  padding: Sequence[int],
                  relu: bool = False) -> Tensor:
    """A stride-1 undilated 3x3 conv on a precomputed kernel transform.

    Args:
        x (Tensor): ``(N, C, H, W)`` float32 CPU input.
        transform (KernelTransform): Of the conv's weight.
        bias (Tensor, optional): ``(O, )``.
        padding (Sequence[int]): ``(pH, pW)``; more than
            :data:`MAX_PADDING` is padded explicitly first.
        relu (bool): Apply ReLU in NNPACK's output transform.

    Returns:
        Tensor: ``F.conv2d(x, weight, bias, padding=padding,
        groups=transform.groups)``, then ReLU if asked, up to rounding.
    """
    if x.dim() != 4 or x.shape[1] != transform.in_per_group * transform.groups:
        raise ValueError(
            f'input {tuple(x.shape)} does not fit a kernel transform of '
            f'{transform.in_per_group * transform.groups} input channels')
    x, (pad_h, pad_w) = pad_beyond_limit(x, padding)
    x = x.contiguous()
    n, _, h, w = x.shape
    cin, cout, groups = (transform.in_per_group, transform.out_per_group,
                         transform.groups)
    pad = _Padding(pad_h, pad_w, pad_h, pad_w)
    out = x.new_empty((n, cout * groups, h + 2 * pad_h - 2, w + 2 * pad_w - 2))
    if bias is None:
        bias = x.new_zeros(cout * groups)  # NNPACK requires a bias
    bias = bias.detach().contiguous()
    size = ctypes.c_size_t(0)
    _call(_REUSE, cin, cout, (h, w), pad, None, transform.buffers[0].ptr, None,
          None, None, size, relu)  # the workspace it needs
    workspace = _workspace(size.value)
    with torch.profiler.record_function(WINOGRAD_PROFILER_NAME):
        _run_images(x, out, transform, bias, pad, workspace, relu)
    return out


def _run_images(x: Tensor, out: Tensor, transform: KernelTransform,
                bias: Tensor, pad: _Padding, workspace: _Aligned,
                relu: bool) -> None:
    n, _, h, w = x.shape
    cin, cout, groups = (transform.in_per_group, transform.out_per_group,
                         transform.groups)
    item = x.element_size()
    for i in range(n):
        for g in range(groups):
            # Channel slices of one NCHW image are contiguous: NNPACK reads
            # and writes them in place.
            size = ctypes.c_size_t(workspace.nbytes)
            _call(_REUSE, cin, cout, (h, w), pad, x[i, g * cin].data_ptr(),
                  transform.buffers[g].ptr,
                  bias.data_ptr() + g * cout * item,
                  out[i, g * cout].data_ptr(), workspace.ptr, size, relu)


def check_c_api() -> Optional[str]:
    """Why NNPACK's C entry point cannot be used here, or None if it can.

    The library and its symbols load, NNPACK initializes, and small convs
    (odd sizes, two paddings, two groups, with and without ReLU, a missing
    bias) match ``F.conv2d`` within :data:`TOLERANCE`. Call it through
    :func:`.guard.c_api_problem` (child process first, cached per process):
    a wrong binding may crash instead of returning.
    """
    try:
        _api()
    except (OSError, AttributeError, NNPackError) as error:
        return (f'NNPACK is not reachable in {_library_path()} '
                f'({type(error).__name__}: {error})')
    gen = torch.Generator().manual_seed(0)
    cases = [(1, [1, 1], True, True), (2, [0, 2], False, False),
             (2, [1, 1], True, False)]
    for groups, padding, use_bias, relu in cases:
        x = torch.randn(2, 8, 11, 13, generator=gen)
        weight = torch.randn(6 * groups, 8 // groups, 3, 3, generator=gen)
        bias = torch.randn(6 * groups, generator=gen) if use_bias else None
        try:
            out = winograd_conv(x, KernelTransform(weight, groups), bias,
                                padding, relu)
        except Exception as error:  # noqa: BLE001  (whatever breaks here)
            return f'{type(error).__name__}: {error}'
        ref = F.conv2d(x, weight, bias, padding=tuple(padding), groups=groups)
        if relu:
            ref = ref.relu()
        err = norm_error(ref, out)
        if not err < TOLERANCE:
            return (f'nnp_convolution_inference differs from F.conv2d by a '
                    f'relative error of {err:.2g} (bound {TOLERANCE:g})')
    return None
