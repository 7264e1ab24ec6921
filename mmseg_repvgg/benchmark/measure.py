"""Measuring primitives: a submodule's time, peak memory, FLOPs, conv time,
the machine's rates; :mod:`.run` puts them together."""
import contextlib
import ctypes
import ctypes.util
import gc
import os
import re
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..deploy.kernels import WINOGRAD_PROFILER_NAME, Int8Conv2d
from ..deploy.timing import median_seconds, synchronizer


class ModuleTimer:
    """Wall time of every call of ``module`` (the backbone: mmseg calls the
    head's ``forward`` directly), by hooks that ``sync`` or, with ``cuda``,
    record events: a synchronize mid-forward would add to the latency."""

    def __init__(self,
                 module: nn.Module,
                 sync: Callable[[], None],
                 cuda: bool = False):
        self.sync = sync
        self.cuda = cuda
        self._calls: List[list] = []  # [start, end] stamps of each call
        self._handles = [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post)
        ]

    def _pre(self, *_):
        self._calls.append([self._stamp(), None])

    def _post(self, *_):
        self._calls[-1][1] = self._stamp()

    def _stamp(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        self.sync()
        return time.perf_counter()

    @property
    def times(self) -> List[float]:
        """Seconds of each call so far (CUDA: waits for the events)."""
        if not self.cuda:
            return [end - start for start, end in self._calls]
        torch.cuda.synchronize()
        return [start.elapsed_time(end) / 1000.0 for start, end in self._calls]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _glibc():
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, 'malloc_trim') else None


_LIBC = _glibc()


def release_memory() -> None:
    """Collect garbage and return free heap pages to the OS (glibc keeps
    them: one form's leftovers would hide the next one's growth)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _status_kib(field: str) -> Optional[int]:
    with contextlib.suppress(OSError), open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    # Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current
    # RSS, which gives a per-form peak inside one process.
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory growth (``bytes``) inside ``with`` on ``device``: CPU's
    peak resident set (VmHWM, reset by ``clear_refs``: it sees every
    allocator) over the one at entry, or CUDA's peak allocated bytes;
    ``bytes`` stays None where neither works; ``method`` says which ran."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith('cuda')
        self.bytes: Optional[int] = None
        self.method = 'cuda max_memory_allocated' if self.cuda else (
            'VmHWM growth (clear_refs reset)')
        self._base = None

    def __enter__(self):
        release_memory()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        elif _reset_peak_rss():
            self._base = _status_kib('VmRSS')
        return self

    def __exit__(self, *exc):
        if self._base is None:
            self.method = 'unavailable'
        elif self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self._base
        else:
            peak = _status_kib('VmHWM')
            self.bytes = None if peak is None else 1024 * (peak - self._base)
        return False


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn()`` by torch's ``FlopCounterMode`` (2 per MAC)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


#: Profiler keys of a convolution: float, oneDNN int8 (its input
#: quantization not counted), NNPACK and Winograd convs.
CONV_OPS = ('aten::convolution', 'onednn::qconv_pointwise',
            'aten::_nnpack_spatial_convolution', WINOGRAD_PROFILER_NAME)

#: kineto writes these from C++ straight to file descriptor 2.
_USDT = re.compile(r'^USDT:.*\] profiler_(start|stop)\s*$')


@contextlib.contextmanager
def without_usdt_lines() -> Iterator[None]:
    """Drop the profiler's ``USDT:`` lines from stderr; pass on the rest."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors='replace').splitlines(
                    keepends=True):
                if not _USDT.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def op_times(fn: Callable[[], object],
             device: str) -> Tuple[List[Tuple[str, float, float, int]], float]:
    """One profiled call of ``fn``: per op ``(key, total ms, own ms,
    calls)`` (device time on CUDA, CPU time otherwise), and wall seconds."""
    cuda = str(device).startswith('cuda')
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    sync = synchronizer(device)
    with without_usdt_lines():  # kineto's start/stop lines on stderr
        sync()
        start = time.perf_counter()
        with torch.profiler.profile(activities=activities) as prof:
            fn()
            sync()
        wall = time.perf_counter() - start
    ops = []
    for e in prof.key_averages():
        total = e.device_time_total if cuda else e.cpu_time_total
        own = e.self_device_time_total if cuda else e.self_cpu_time_total
        ops.append((e.key, total / 1e3, own / 1e3, e.count))
    return ops, wall


def top_ops(ops: List[Tuple[str, float, float, int]], top: int) -> List:
    """``[key, own ms, calls]`` of the ``top`` ops by their own time."""
    ranked = sorted(ops, key=lambda op: op[2], reverse=True)[:top]
    return [[key, round(own, 3), count] for key, _, own, count in ranked]


def conv_profile(fn: Callable[[], object],
                 device: str,
                 top: int = 6,
                 calls: int = 2) -> Dict:
    """Of ``calls`` profiled calls of ``fn``, the one with the least conv
    time (a neighbour can slow one; "% of ceiling" rests on it): its
    ``conv_ms`` (:data:`CONV_OPS`' total, device time on CUDA),
    ``wall_ms`` and ``top`` ops as ``[name, self ms, calls]``."""
    profiles = []
    for _ in range(calls):
        ops, wall = op_times(fn, device)
        conv_ms = sum(total for key, total, _, _ in ops if key in CONV_OPS)
        profiles.append(
            dict(
                conv_ms=conv_ms,
                wall_ms=1000.0 * wall,
                top_ops=top_ops(ops, top)))
    return min(profiles, key=lambda profile: profile['conv_ms'])


def matmul_rate(n: int,
                dtype: torch.dtype,
                device: str,
                runs: int = 3) -> float:
    """GFLOP/s of an ``n x n`` matmul (median of ``runs`` after one)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    with torch.inference_mode():
        seconds = median_seconds(lambda: torch.mm(a, b), runs, device)
    return 2.0 * n**3 / seconds / 1e9


def conv_rate(channels: int,
              height: int,
              width: int,
              dtype: torch.dtype,
              device: str,
              runs: int = 5) -> float:
    """GFLOP/s of a plain 3x3 conv, ``channels`` in and out, batch 1;
    ``torch.int8``: the int8 forms' oneDNN kernel alone (input quantized
    beforehand), as a model's conv profile counts it."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
    x = torch.randn(1, channels, height, width)
    if dtype == torch.int8:
        x = x.relu()
        int8 = Int8Conv2d(conv, (0.0, float(x.max())))
        x, conv = int8.quantize_input(x), int8.conv_quantized
    else:
        conv = conv.to(device=device, dtype=dtype)
        x = x.to(device=device, dtype=dtype)
    flops = 2.0 * channels * channels * 9 * height * width
    with torch.inference_mode():
        seconds = median_seconds(lambda: conv(x), runs, device)
    return flops / seconds / 1e9
