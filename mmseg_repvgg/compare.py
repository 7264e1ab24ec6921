"""The one output comparison, for the fusion checks, the exports, the
kernels' self-checks, ``auto`` and the benchmark."""
from typing import Tuple

from torch import Tensor


def relative_error(expected: Tensor, actual: Tensor) -> Tuple[float, float]:
    """Max abs difference, and the same over the largest expected value."""
    diff = (expected.float() - actual.float()).abs().max().item()
    scale = expected.abs().max().item()
    return diff, diff / max(scale, 1e-12)


def norm_error(expected: Tensor, actual: Tensor) -> float:
    """Relative error in the Frobenius norm (a kernel's error spread over
    a whole output, where one large value would hide the rest)."""
    return ((actual.float() - expected.float()).norm() /
            expected.float().norm().clamp_min(1e-12)).item()


def agreeing_labels(expected: Tensor, actual: Tensor) -> Tuple[int, int]:
    """(pixels labelled alike, pixels) of two logit batches (N, C, H, W)
    or label maps (N, H, W)."""
    if expected.dim() == 4:
        expected, actual = expected.argmax(1), actual.argmax(1)
    return int((actual == expected).sum()), expected.numel()


def clear_label_mismatches(logits: Tensor, labels: Tensor,
                           tol: float) -> Tuple[int, int]:
    """(pixels whose ``labels`` differ from the argmax of ``logits``, those
    of them at a clear margin): logits that differ by rounding may flip
    the argmax only where the two best classes tie."""
    mismatched = labels != logits.argmax(dim=1)
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > tol * logits.abs().max()
    return int(mismatched.sum()), int((mismatched & clear).sum())
