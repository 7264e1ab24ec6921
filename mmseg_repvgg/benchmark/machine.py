"""What the numbers were measured on, and how fast that machine can go."""
import os
import platform
import re
import time
from importlib import metadata
from typing import Dict, Sequence, Tuple

import torch

from ..models.int8 import int8_supported
from .forms import DTYPE_NAMES, reduced_dtype
from .measure import conv_rate, matmul_rate

_PACKAGES = ('torch', 'mmsegmentation', 'mmcv', 'mmengine', 'onnx',
             'onnxruntime', 'onnxscript', 'numpy', 'matplotlib',
             'mmseg-repvgg')


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> Dict[str, bool]:
    try:
        with open('/proc/cpuinfo') as f:
            flags = set(
                next((line for line in f if line.startswith('flags')),
                     '').split())
    except OSError:
        flags = set()
    return {
        flag: flag in flags
        for flag in ('avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni',
                     'amx_bf16')
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return 'not installed'


def machine_info(device: str) -> Dict:
    """Host, processor, threads, device and library versions."""
    onednn = re.findall(r'(?:oneDNN|MKL-DNN) v[\d.]+', torch.__config__.show())
    info = dict(
        time_utc=time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()),
        host=platform.node(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=_cpu_model(),
        cpu_flags=_cpu_flags(),
        cpu_count=os.cpu_count(),
        cpus_usable=len(os.sched_getaffinity(0)) if hasattr(
            os, 'sched_getaffinity') else os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        onednn=onednn[0] if onednn else None,
        load_average=list(os.getloadavg()),
        device=str(device),
        reduced_dtype=DTYPE_NAMES[reduced_dtype(device)],
        versions={name: _version(name)
                  for name in _PACKAGES})
    if str(device).startswith('cuda'):
        info.update(
            gpu=torch.cuda.get_device_name(device),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_conv=torch.backends.cudnn.allow_tf32)
    return info


def measure_ceilings(device: str, matmul_size: int,
                     conv_shapes: Sequence[Tuple[int, int, int]]) -> Dict:
    """The machine's fp32 and reduced-precision matmul and 3x3 conv rates,
    and on x86 CPUs the int8 3x3 conv rate.

    Measured first in a run, which also warms up oneDNN (or cuBLAS/cuDNN)
    and the thread pool before any model is timed.

    Args:
        device (str): ``'cpu'`` or a CUDA device.
        matmul_size (int): N of the N x N x N matmul.
        conv_shapes (Sequence[tuple]): (channels, H, W) of each 3x3 conv
            (channels in and out, batch 1); the best rate counts.

    Returns:
        dict: ``{'fp32': {...}, 'bf16' or 'fp16': {...}}``, each with
        ``matmul``, ``conv3x3`` (the best shape), ``conv3x3_shapes`` (by
        ``CxHxW``) and ``ceiling`` (the larger of matmul and conv) in
        GFLOP/s, plus the sizes used; on a CPU with oneDNN's int8 convs
        also ``'int8'`` (conv only: its ``matmul`` is None).
    """
    ceilings = dict(
        matmul_size=matmul_size, conv_shapes=[list(s) for s in conv_shapes])
    names = {torch.float32: 'fp32', torch.int8: 'int8', **DTYPE_NAMES}
    dtypes = [torch.float32, reduced_dtype(device)]
    if str(device) == 'cpu' and int8_supported():
        dtypes.append(torch.int8)  # no int8 matmul is measured
    for dtype in dtypes:
        convs = {
            'x'.join(map(str, shape)): conv_rate(*shape, dtype, device)
            for shape in conv_shapes
        }
        rates = dict(
            matmul=None if dtype == torch.int8 else matmul_rate(
                matmul_size, dtype, device),
            conv3x3=max(convs.values()),
            conv3x3_shapes=convs)
        rates['ceiling'] = max(rates['matmul'] or 0.0, rates['conv3x3'])
        ceilings[names[dtype]] = rates
    return ceilings
