"""NNPACK's own Winograd entry point in ``libtorch_cpu``, by ``ctypes``: each
kernel transformed once (torch's op does it per call), ReLU fused."""
import ctypes
import functools
import itertools
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
#: torch's CPU library, which holds NNPACK.
_LIBRARY = os.path.join(
    os.path.dirname(torch.__file__), 'lib', 'libtorch_cpu.so')
#: NNPACK requires its buffers (transform, workspace) 64-byte aligned.
_ALIGN = 64
#: NNPACK's input padding must be smaller than the kernel.
MAX_PADDING = 2
#: Winograd's bound of relative (Frobenius) error against ``F.conv2d``.
TOLERANCE = 1e-4
#: The profiler's name for these convs (the benchmark counts it as conv).
WINOGRAD_PROFILER_NAME = 'nnpack::winograd_conv'
_workspaces = threading.local()


def pad_beyond_limit(x: Tensor,
                     padding: Sequence[int]) -> Tuple[Tensor, List[int]]:
    """``x`` padded beyond :data:`MAX_PADDING`, and the rest of ``padding``."""
    pad_h, pad_w = padding
    extra_h, extra_w = (max(p - MAX_PADDING, 0) for p in padding)
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


@functools.lru_cache(maxsize=None)
def _api():
    """NNPACK's conv and pthreadpool_create, initialized (raises if absent)."""
    lib = ctypes.CDLL(_LIBRARY)
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
    """A pthreadpool kept for the process (torch's is not exported)."""
    return _api()[1](threads)


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


def _workspace(nbytes: int) -> _Aligned:
    """A scratch buffer per thread (else NNPACK allocates one per conv)."""
    buf = getattr(_workspaces, 'buffer', None)
    if buf is None or buf.nbytes < nbytes:
        buf = _workspaces.buffer = _Aligned(nbytes)
    return buf


class KernelTransform:
    """The Winograd transforms of a float32 CPU 3x3 ``weight`` per group,
    for any input size: ``64 / 9`` of its memory (8 x 8 per 3 x 3)."""

    def __init__(self, weight: Tensor, groups: int = 1):
        self.groups = groups
        self.out_per_group = weight.shape[0] // groups
        self.in_per_group = weight.shape[1]
        self.key = _weight_key(weight)
        weight = weight.detach().contiguous()
        self.buffers = []
        # Any input size gives the same transform; NNPACK wants one.
        shape, pad = (8, 8), _Padding(1, 1, 1, 1)
        for kernel in weight.split(self.out_per_group):
            args = (self.in_per_group, self.out_per_group, shape, pad, None,
                    kernel.data_ptr(), None, None)
            size = ctypes.c_size_t(0)
            _call(_PRECOMPUTE, *args, None, size, False)  # asks the size
            buf = _Aligned(size.value)
            _call(_PRECOMPUTE, *args, buf.ptr, size, False)
            self.buffers.append(buf)

    @property
    def nbytes(self) -> int:
        return sum(buf.nbytes for buf in self.buffers)

    def matches(self, weight: Tensor, groups: int) -> bool:
        """Whether ``weight`` is the same storage, not written to since."""
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
    """``F.conv2d(x, weight, bias, padding=padding, groups=groups)`` (then
    ReLU if asked) from the weight's ``transform``, up to rounding."""
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
        for i, g in itertools.product(range(n), range(groups)):
            # One image's channel slices are contiguous: used in place.
            size = ctypes.c_size_t(workspace.nbytes)
            _call(_REUSE, cin, cout, (h, w), pad, x[i, g * cin].data_ptr(),
                  transform.buffers[g].ptr,
                  bias.data_ptr() + g * cout * x.element_size(),
                  out[i, g * cout].data_ptr(), workspace.ptr, size, relu)
    return out


def check_c_api() -> Optional[str]:
    """Why NNPACK's C entry point is unusable here (small convs against
    ``F.conv2d``), or None; a wrong binding may crash: see :mod:`.guard`."""
    try:
        _api()
    except (OSError, AttributeError, NNPackError) as error:
        return (f'NNPACK is not reachable in {_LIBRARY} '
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
