"""Hand-written kernels of the ``winograd*``, ``int8*``, ``*_cl*`` and
``*lowres`` forms where torch lacks a piece, loaded by name on first use."""
from .. import lazy_exports

#: Public name -> the submodule that defines it (loaded on first access).
_EXPORTS = {
    'WinogradConv2d': 'winograd',
    'ineligible_reason': 'winograd',
    'winograd_convs': 'winograd_convs',
    'nnpack_problem': 'guard',
    'WINOGRAD_PROFILER_NAME': 'nnpack',
    'Int8Conv2d': 'int8',
    'why_int8_unavailable': 'int8',
    'calibrate_activation_ranges': 'int8',
    'quantize_int8': 'int8',
    'quantize_calibrated': 'int8_recipe',
    'int8_layer_table': 'int8_recipe',
    'RECIPES': 'int8_recipe',
    'lowres_psp_heads': 'psp_lowres',
    'contiguous_psp_pooling': 'psp_pooling',
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
