"""What the numbers were measured on, and how fast that machine can go."""
import os
import platform
import re
import time
from importlib import metadata
from typing import Dict, Sequence, Tuple

import torch

from ..deploy.forms import DTYPE_NAMES
from ..deploy.machine import machine
from .measure import conv_rate, matmul_rate

_PACKAGES = ('torch', 'mmsegmentation', 'mmcv', 'mmengine', 'onnx',
             'onnxruntime', 'onnxscript', 'openvino', 'nncf', 'numpy',
             'matplotlib', 'mmseg-repvgg')


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return 'not installed'


def machine_info(device: str) -> Dict:
    """Host, processor, threads, device and library versions."""
    onednn = re.findall(r'(?:oneDNN|MKL-DNN) v[\d.]+', torch.__config__.show())
    features = machine().summary()
    info = dict(
        time_utc=time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()),
        description=machine().describe(device),
        host=platform.node(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=features.pop('cpu'),
        cpu_flags=features.pop('cpu_flags'),
        features=features,
        cpu_count=os.cpu_count(),
        cpus_usable=len(os.sched_getaffinity(0)) if hasattr(
            os, 'sched_getaffinity') else os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        onednn=onednn[0] if onednn else None,
        load_average=list(os.getloadavg()),
        device=str(device),
        reduced_dtype=DTYPE_NAMES[machine().reduced_dtype(device)],
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
    """The machine's fp32 matmul and 3x3 conv rates, and those of the
    reduced float type and int8 where they run natively (an emulated bf16
    conv would take minutes). Measured first: it also warms up the kernels
    and the thread pool.

    Args:
        device (str): ``'cpu'`` or a CUDA device.
        matmul_size (int): N of the N x N x N matmul.
        conv_shapes (Sequence[tuple]): (C, H, W) of 3x3 convs; the best counts.

    Returns:
        dict: Per precision (``fp32``, ``bf16`` or ``fp16``, CPU ``int8``
        without a matmul) ``matmul``, ``conv3x3``, ``conv3x3_shapes`` and
        ``ceiling`` (the larger) in GFLOP/s; the sizes; ``skipped``
        (``{precision: why}``).
    """
    ceilings = dict(
        matmul_size=matmul_size, conv_shapes=[list(s) for s in conv_shapes])
    names = {torch.float32: 'fp32', torch.int8: 'int8', **DTYPE_NAMES}
    dtypes = [torch.float32, machine().reduced_dtype(device)]
    if str(device) == 'cpu':
        dtypes.append(torch.int8)  # no int8 matmul is measured
    skipped = {}
    for dtype in list(dtypes[1:]):
        reason = machine().why_not(names[dtype], device)
        if reason:
            dtypes.remove(dtype)
            skipped[names[dtype]] = reason
    ceilings['skipped'] = skipped
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
