"""Hand-written CPU kernels behind some deploy forms: optional.

The deploy API works without this layer: the fused fp32 forms, onnxruntime
and OpenVINO use none of it. It serves the forms ``winograd*``,
``int8*``, ``*lowres*`` and ``*_cl*`` (:mod:`mmseg_repvgg.deploy.forms`),
and writes by hand only what torch, NNPACK and oneDNN lack:

* :mod:`.winograd`, :mod:`.winograd_convs`, :mod:`.tuning`: 3x3 convs run
  by the faster of oneDNN's direct conv and NNPACK's Winograd, chosen per
  layer and input shape, the choices kept on disk per machine and
  exportable (:func:`tuned_choices`, :func:`apply_choices`);
* :mod:`.nnpack` (NNPACK's C entry point inside torch's library, each
  kernel transformed once), :mod:`.nnpack_op` (torch's NNPACK op),
  :mod:`.space_to_batch` (dilated convs as undilated ones on sub-grids);
* :mod:`.int8` with :mod:`.onednn_int8`: post-training int8 convs by
  oneDNN;
* :mod:`.psp_lowres`: PSPNet's bottleneck with its pooled branches at pool
  resolution;
* :mod:`.psp_pooling`: PSP's pyramid pooling on a contiguous copy, for
  the channels_last and compiled forms (CUDA's channels_last adaptive
  pooling is many times slower; the values are equal);
* :mod:`.relu`: where a following ReLU can move into a kernel;
* :mod:`.guard`: the checks in front of the private torch routes.

Checked on torch 2.13.0+cpu with oneDNN 3.12 (``CHECKED_TORCH`` in
:mod:`.guard`). Private: NNPACK's C entry point (bound with ``ctypes``),
``torch._nnpack_spatial_convolution`` and ``torch.ops.onednn.qconv_*`` are
not public torch API, so each is checked in a child process and then in
this one before first use, and falls back (or is refused) with one log
line where the check fails; names with a leading underscore, and the
modules :mod:`.nnpack`, :mod:`.nnpack_op`, :mod:`.onednn_int8`,
:mod:`.tuning` and :mod:`.guard` as a whole, are this layer's own. The
names below are its public API; each loads its module on first use.
"""
from .. import lazy_exports

#: Public name -> the submodule that defines it (loaded on first access).
_EXPORTS = {
    'WinogradConv2d': 'winograd',
    'ineligible_reason': 'winograd',
    'winograd_convs': 'winograd_convs',
    'tuned_choices': 'winograd_convs',
    'apply_choices': 'winograd_convs',
    'choices_table': 'winograd_convs',
    'transform_bytes': 'winograd_convs',
    'nnpack_problem': 'guard',
    'Int8Conv2d': 'int8',
    'int8_supported': 'int8',
    'calibrate_activation_ranges': 'int8',
    'quantize_int8': 'int8',
    'lowres_psp_heads': 'psp_lowres',
    'contiguous_psp_pooling': 'psp_pooling',
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
