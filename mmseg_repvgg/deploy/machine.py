"""The one place that knows what this machine runs natively: the CPU flags
the kernels may use as ``ONEDNN_MAX_CPU_ISA`` caps them, and the GPUs."""
import functools
import os
import platform
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional, Tuple

import torch

#: Features this module reasons about, named as ``/proc/cpuinfo`` names them.
CPU_FEATURES = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16',
                'avx512_fp16', 'amx_bf16', 'amx_int8', 'amx_fp16')
_AVX2 = {'avx2'}
_AVX512 = _AVX2 | {'avx512f'}
_AVX512_VNNI = _AVX512 | {'avx512_vnni'}
_AVX512_BF16 = _AVX512_VNNI | {'avx512_bf16'}
_AVX512_FP16 = _AVX512_BF16 | {'avx512_fp16'}
_AMX = _AVX512_FP16 | {'amx_bf16', 'amx_int8'}
#: What each ``ONEDNN_MAX_CPU_ISA`` lets oneDNN use (names on a line are
#: aliases; AVX2_VNNI is no subset of AVX512_CORE).
ONEDNN_ISA_FEATURES: Dict[str, FrozenSet[str]] = {
    name: frozenset(features)
    for names, features in (
        ('SSE41 AVX', ()),
        ('AVX2', _AVX2),
        ('AVX2_VNNI AVX2_VNNI_2', _AVX2 | {'avx_vnni'}),
        ('AVX512_CORE', _AVX512),
        ('AVX512_CORE_VNNI', _AVX512_VNNI),
        ('AVX512_CORE_BF16', _AVX512_BF16),
        ('AVX512_CORE_FP16 AVX10_1_512', _AVX512_FP16),
        ('AVX512_CORE_AMX AVX10_1_512_AMX', _AMX),
        ('AVX512_CORE_AMX_FP16 AVX10_1_512_AMX_FP16', _AMX | {'amx_fp16'}),
    )
    for name in names.split()
}
#: :attr:`Machine.isa_level` names, best first, by the feature that decides.
_ISA_LEVELS = (('AMX', 'amx_bf16'), ('AVX512-BF16', 'avx512_bf16'),
               ('AVX512-VNNI', 'avx512_vnni'), ('AVX512', 'avx512f'),
               ('AVX2-VNNI', 'avx_vnni'), ('AVX2', 'avx2'))
#: Precisions the deploy forms use, and what runs each natively.
PRECISIONS = ('fp32', 'bf16', 'fp16', 'int8')


def _read_cpuinfo() -> Tuple[str, FrozenSet[str]]:
    model, flags = '', frozenset()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name') and not model:
                    model = line.split(':', 1)[1].strip()
                elif line.startswith('flags') and not flags:
                    flags = frozenset(line.split(':', 1)[1].split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def onednn_isa_cap() -> Optional[str]:
    """``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_...``) upper case, or None (none,
    ``ALL`` or ``DEFAULT``)."""
    value = (os.environ.get('ONEDNN_MAX_CPU_ISA')
             or os.environ.get('DNNL_MAX_CPU_ISA') or '').strip().upper()
    return None if value in ('', 'ALL', 'DEFAULT') else value


@dataclass(frozen=True)
class Machine:
    """What this process can run, and why not: the fields as :func:`detect`
    reads them, and ``features``, the CPU flags oneDNN may use."""

    cpu: str
    arch: str
    cpu_flags: FrozenSet[str]
    onednn_cap: Optional[str] = None
    aten_capability: str = 'DEFAULT'
    onednn_int8: bool = False
    cuda: Tuple[str, ...] = ()
    cuda_capability: Optional[Tuple[int, int]] = None
    features: FrozenSet[str] = field(init=False)

    def __post_init__(self):
        own = self.cpu_flags & set(CPU_FEATURES)
        allowed = ONEDNN_ISA_FEATURES.get(self.onednn_cap or '')
        effective = own if allowed is None else own & allowed
        object.__setattr__(self, 'features', frozenset(effective))

    @property
    def x86(self) -> bool:
        return self.arch.lower() in ('x86_64', 'amd64', 'i386', 'i686')

    @property
    def vnni(self) -> bool:
        """oneDNN's int8 convs add u8 x s8 products in int32 (VNNI/AMX)."""
        return bool(self.features & {'avx512_vnni', 'avx_vnni', 'amx_int8'})

    @property
    def int8_activation_bits(self) -> int:
        """8 with VNNI; 7 without, so that no int16 pair sum saturates."""
        return 8 if self.vnni else 7

    @property
    def isa_level(self) -> str:
        """A short name of what oneDNN uses, for reports."""
        for name, feature in _ISA_LEVELS:
            if feature in self.features:
                return name
        return 'baseline' if self.x86 else self.arch

    def why_not(self, precision: str, device: str = 'cpu') -> Optional[str]:
        """None if ``precision`` runs natively on ``device``, else why not
        and what hardware it needs."""
        if precision not in PRECISIONS:
            raise ValueError(f'unknown precision {precision!r}; one of '
                             f'{", ".join(PRECISIONS)}')
        if str(device).startswith('cuda'):
            return self._why_not_cuda(precision)
        if precision == 'fp32':
            return None
        if precision == 'int8':
            if not (self.x86 and self.onednn_int8):
                return ('int8 forms need PyTorch with oneDNN on an x86 CPU '
                        '(torch.ops.onednn.qconv_pointwise)')
            return None
        needs = {
            'bf16': ({'avx512_bf16', 'amx_bf16'}, 'AVX512-BF16 or AMX'),
            'fp16': ({'avx512_fp16', 'amx_fp16'}, 'AVX512-FP16 or AMX-FP16'),
        }[precision]
        if self.features & needs[0]:
            return None
        capped = (f' (ONEDNN_MAX_CPU_ISA={self.onednn_cap} caps oneDNN)'
                  if self.onednn_cap and self.cpu_flags & needs[0] else '')
        return (f'{precision} is not native on this CPU ({self.isa_level}'
                f'{capped}): oneDNN would emulate it, many times slower than '
                f'fp32; it needs {needs[1]} (e.g. Intel Sapphire Rapids, '
                'AMD Zen 4), or a CUDA GPU')

    def _why_not_cuda(self, precision: str) -> Optional[str]:
        if not self.cuda:
            return 'no CUDA device is visible to torch'
        if precision == 'int8':
            return ('the int8 forms are CPU forms (oneDNN); on a GPU use '
                    'fp16 or TensorRT')
        if precision == 'bf16' and (self.cuda_capability or (0, 0)) < (8, 0):
            return (f'bf16 needs an Ampere or newer GPU (compute capability '
                    f'8.0); this one has {self.cuda_capability}')
        return None

    def native(self, precision: str, device: str = 'cpu') -> bool:
        return self.why_not(precision, device) is None

    def reduced_dtype(self, device: str = 'cpu') -> torch.dtype:
        """fp16 on CUDA, bf16 on the CPU (native or not)."""
        return (torch.float16
                if str(device).startswith('cuda') else torch.bfloat16)

    def fingerprint(self) -> str:
        """What decides the fastest kernel here: :mod:`.cache`'s key."""
        return '|'.join(
            (self.cpu, self.arch, ','.join(sorted(self.features)) or '-',
             f'aten={self.aten_capability}', f'torch={torch.__version__}',
             f'threads={torch.get_num_threads()}'))

    def describe(self, device: str = 'cpu') -> str:
        """One line naming the machine: the GPU, or the CPU with the
        features its kernels use (after ``ONEDNN_MAX_CPU_ISA``)."""
        if str(device).startswith('cuda') and self.cuda:
            return f'{self.cuda[0]}, torch {torch.__version__}'
        names = [
            'AVX-512' if f == 'avx512f' else f.upper().replace('_', '-')
            for f in CPU_FEATURES if f in self.features
        ]
        cap = f', ONEDNN_MAX_CPU_ISA={self.onednn_cap}' if self.onednn_cap \
            else ''
        return (
            f'{self.cpu} ({" ".join(names) or "no AVX2"}{cap}), '
            f'{torch.get_num_threads()} threads, torch {torch.__version__}')

    def summary(self) -> Dict:
        """JSON-ready: the CPU, its flags and what the kernels use."""
        return dict(
            cpu=self.cpu,
            arch=self.arch,
            cpu_flags={f: f in self.cpu_flags
                       for f in CPU_FEATURES},
            onednn_max_cpu_isa=self.onednn_cap,
            effective_features=sorted(self.features),
            isa_level=self.isa_level,
            aten_capability=self.aten_capability,
            vnni=self.vnni,
            int8_activation_bits=self.int8_activation_bits,
            native_cpu={p: self.native(p, 'cpu')
                        for p in PRECISIONS},
            cuda=list(self.cuda))


def detect() -> Machine:
    """Read this machine's features now (see :func:`machine`)."""
    cpu, flags = _read_cpuinfo()
    cuda, capability = (), None
    if torch.cuda.is_available():
        cuda = tuple(
            torch.cuda.get_device_name(i)
            for i in range(torch.cuda.device_count()))
        capability = tuple(torch.cuda.get_device_capability(0))
    return Machine(
        cpu=cpu,
        arch=platform.machine(),
        cpu_flags=flags,
        onednn_cap=onednn_isa_cap(),
        aten_capability=torch.backends.cpu.get_cpu_capability(),
        onednn_int8=(torch.backends.mkldnn.is_available()
                     and hasattr(torch.ops.onednn, 'qconv_pointwise')
                     and hasattr(torch.ops.onednn, 'qconv_prepack')),
        cuda=cuda,
        cuda_capability=capability)


@functools.lru_cache(maxsize=None)
def machine() -> Machine:
    """This process's :class:`Machine`, detected once (as oneDNN does)."""
    return detect()
