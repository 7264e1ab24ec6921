"""Export a fused segmentor to ONNX (by dynamo: the legacy exporter fails on
PSPNet's adaptive pooling at most sizes) and check it in onnxruntime."""
import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..atomic_io import atomic_path
from ..compare import clear_label_mismatches, relative_error
from ..errors import ConfigError
from ..models.backbones import RepVGG
from ..models.fuse import (FusionMismatchError, FusionReport, fuse_segmentor,
                           random_inputs, segmentor_logits)


def output_stride(model: nn.Module) -> int:
    """How much the backbone downsamples: 2 (stem) x the stage strides."""
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, RepVGG):
        return 1  # unknown backbone: no constraint we can state
    return 2 * math.prod(backbone.strides)


def check_export_shape(model: nn.Module, height: int, width: int) -> None:
    """Raise unless H and W are positive multiples of the output stride."""
    stride = output_stride(model)
    if all(v >= stride and v % stride == 0 for v in (height, width)):
        return

    def near(v):
        low = max(v // stride, 1) * stride
        return (low, low + stride) if low != v else (v, v)

    (h0, h1), (w0, w1) = near(height), near(width)
    raise ConfigError(
        f'--shape {height} {width} is not a positive multiple of the '
        f"model's output stride {stride}; use --shape {h0} {w0} or "
        f'--shape {h1} {w1}')


def _pool_matrix(length, out: int, like: Tensor) -> Tensor:
    """(out, length) matrix averaging the adaptive-pooling bins of a row."""
    index = torch.arange(out, device=like.device)
    start = torch.div(index * length, out, rounding_mode='floor')
    end = torch.div((index + 1) * length + out - 1, out, rounding_mode='floor')
    pos = torch.arange(length, device=like.device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


class ShapeGenericAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` as two matmuls with bins from
    the input size: the dynamo exporter freezes its bins at the example's
    size (wrong values or a crash at other sizes)."""

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(output_size)

    def forward(self, x: Tensor) -> Tensor:
        (height, width), (out_h, out_w) = x.shape[-2:], self.output_size
        rows = _pool_matrix(height, out_h or height, x)
        cols = _pool_matrix(width, out_w or width, x)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


class _SegmentorExport(nn.Module):
    """Normalized NCHW image -> logits or label map, at input size."""

    def __init__(self, segmentor: nn.Module, argmax: bool):
        super().__init__()
        self.segmentor = segmentor
        self.argmax = argmax

    def forward(self, inputs: Tensor) -> Tensor:
        logits = segmentor_logits(self.segmentor, inputs)
        return logits.argmax(dim=1) if self.argmax else logits


def export_onnx(model: nn.Module,
                out: str,
                shape: Tuple[int, int],
                argmax: bool = False,
                dynamic: bool = False,
                in_channels: int = 3) -> FusionReport:
    """Export a fused copy of ``model`` to ``out`` atomically, from an
    example input of ``shape`` (H, W): normalized RGB NCHW image in, logits
    ``(N, classes, H, W)`` or with ``argmax`` labels ``(N, H, W)`` out;
    ``dynamic``: any N, H, W. Returns the fusion's report."""
    height, width = shape
    check_export_shape(model, height, width)
    fused, report = fuse_segmentor(model)
    for module in list(fused.modules()) if dynamic else []:
        for name, child in module.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(module, name,
                        ShapeGenericAdaptiveAvgPool2d(child.output_size))
    # torch.export specializes a dimension of size 1: a dynamic batch of 2.
    inputs = random_inputs((2 if dynamic else 1, in_channels, height, width))
    dims = dict.fromkeys((0, 2, 3), torch.export.Dim.DYNAMIC)  # N, H, W
    with atomic_path(out) as tmp, torch.no_grad():
        torch.onnx.export(
            _SegmentorExport(fused, argmax).eval(), (inputs, ),
            tmp,
            dynamo=True,
            external_data=False,
            dynamic_shapes=dict(inputs=dims) if dynamic else None,
            input_names=['input'],
            output_names=['labels' if argmax else 'logits'],
            verbose=False)
    return report


@dataclass
class OnnxCheck:
    """onnxruntime against PyTorch at ``shape``: the max abs logit difference
    and its ``rel``ative size, or the ``mismatched`` labels."""

    shape: Tuple[int, ...]
    max_abs: float = float('nan')
    rel: float = float('nan')
    mismatched: int = 0


@torch.no_grad()
def check_onnx(path: str,
               model: nn.Module,
               shapes: Sequence[Sequence[int]],
               argmax: bool = False,
               tol: float = 1e-4) -> List[OnnxCheck]:
    """One :class:`OnnxCheck` per NCHW input shape of the ONNX file run in
    onnxruntime against ``model`` (set to eval); FusionMismatchError beyond
    relative ``tol`` (``argmax``, labels: but for near-ties)."""
    # Imported here: the backends export through this module.
    from .backends.onnxruntime import onnxruntime_session
    session = onnxruntime_session(path)
    model.eval()
    results = []
    for seed, shape in enumerate(shapes):
        inputs = random_inputs(shape, seed)
        expected = segmentor_logits(model, inputs)
        actual = torch.from_numpy(
            session.run(None, {'input': inputs.numpy()})[0])
        if argmax:
            mismatched, clear = clear_label_mismatches(expected, actual, tol)
            if clear:
                raise FusionMismatchError(
                    f'onnxruntime labels differ from PyTorch at {clear} '
                    'pixels with a clear margin')
            results.append(OnnxCheck(tuple(shape), mismatched=mismatched))
            continue
        diff, rel = relative_error(expected, actual)
        if not rel <= tol:
            raise FusionMismatchError(
                f'onnxruntime logits differ from PyTorch by {diff:.3g} '
                f'({rel:.3g} relative, tolerance {tol:g}) at input '
                f'{tuple(shape)}')
        results.append(OnnxCheck(tuple(shape), max_abs=diff, rel=rel))
    return results
