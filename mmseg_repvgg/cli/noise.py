"""Third-party lines that say nothing to a user of the tools, filtered.

Each filter names the message and where it comes from, so nothing else is
hidden (never all warnings). (mmengine's ``Failed to search registry with
scope "mmseg"`` has its cause removed instead: :mod:`mmseg_repvgg.registry`.)

* setuptools' ``pkg_resources is deprecated`` UserWarning, raised again
  each time mmengine's ``is_installed`` reloads ``pkg_resources`` (then
  attributed to importlib; the environment pins setuptools < 82 for
  mmengine: nothing a user can act on);
* mmseg's own ``build_loss would be deprecated`` and ``avg_non_ignore``
  UserWarnings, raised by mmseg's code on every model build;
* torch's ONNX exporter logging ``torchvision is not installed. Skipping
  torchvision::...`` (torchvision is not a dependency), and torch's
  pytree ``LeafSpec`` FutureWarning raised from its own code while
  exporting;
* torch's deprecation of ``quantize_per_tensor``, which the int8 forms'
  input quantization calls (one vectorized pass; torch offers no
  replacement as fast).

(The profiler's ``USDT:`` lines are dropped where the benchmark profiles:
:func:`mmseg_repvgg.benchmark.measure.without_usdt_lines`.)
"""
import logging
import warnings

# (category, message prefix, module regex): the module is the one the
# warning is attributed to.
_WARNINGS = [
    (UserWarning, 'pkg_resources is deprecated',
     r'(mmengine\.utils\.package_utils|importlib)$'),
    (UserWarning, '``build_loss`` would be deprecated',
     r'mmseg\.models\.builder$'),
    (UserWarning, 'Default ``avg_non_ignore`` is False',
     r'mmseg\.models\.losses\.cross_entropy_loss$'),
    (FutureWarning, r'`isinstance\(treespec, LeafSpec\)` is deprecated',
     r'copyreg$'),
    (UserWarning, r'torch\.quantize_per_tensor, torch\.quantize_per_channel',
     r'mmseg_repvgg\.deploy\.kernels\.int8$'),
]


class _DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_TORCHVISION = _DropMessages('torchvision is not installed. Skipping')


def filter_third_party_noise() -> None:
    """Install the filters (the tools' entry, :func:`~..errors.run_cli`)."""
    for category, message, module in _WARNINGS:
        warnings.filterwarnings(
            'ignore', message=message, category=category, module=module)
    logging.getLogger('torch.onnx._internal.exporter._registration').addFilter(
        _TORCHVISION)
