"""Third-party lines that say nothing to a user of the tools, filtered; each
filter names the message and its source, so nothing else is hidden."""
import logging
import warnings

# (category, message prefix, regex of the module the warning names)
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


def _not_torchvision(record: logging.LogRecord) -> bool:
    return not str(
        record.msg).startswith('torchvision is not installed. Skipping')


def filter_third_party_noise() -> None:
    """Install the filters (:func:`~mmseg_repvgg.cli.run_cli` does)."""
    for category, message, module in _WARNINGS:
        warnings.filterwarnings(
            'ignore', message=message, category=category, module=module)
    logging.getLogger('torch.onnx._internal.exporter._registration').addFilter(
        _not_torchvision)
