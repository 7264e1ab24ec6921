"""Everything a user ships: deploy artifacts and the deploy forms.

Nothing here is loaded by ``import mmseg_repvgg`` (what a config's
``custom_imports`` runs): training needs none of it. The names below load
their module on first use.

* :mod:`.artifacts`: deploy checkpoint + config (the fused model, see
  :func:`mmseg_repvgg.models.fuse_segmentor`), checked fused == unfused.
* :mod:`.onnx_export`: ONNX export of the fused segmentor, checked in
  onnxruntime.
* :mod:`.forms`, :mod:`.deployed`, :mod:`.auto`: the shippable forms, which
  of them run here, :func:`deploy_model` (the one entry to all of them) and
  ``form='auto'`` (chosen by measuring them on this machine).
* :mod:`.cuda_graphs`: the ``*_graph`` forms, replayed as CUDA graphs.
* :mod:`.machine`: the one place that knows the CPU's and GPU's features.
* :mod:`.kernels`: optional hand-written CPU kernels (Winograd/NNPACK,
  oneDNN int8, low-res PSP head).
* :mod:`.backends`: one module per runtime (onnxruntime, OpenVINO).
"""
import importlib

#: Public name -> the submodule that defines it (loaded on first access).
_EXPORTS = {
    'DeployedModel': 'deployed',
    'deploy_model': 'deployed',
    'deployed_segmentor': 'deployed',
    'FORMS': 'forms',
    'Form': 'forms',
    'FormUnavailable': 'forms',
    'available_forms': 'forms',
    'ReparamResult': 'artifacts',
    'deploy_config': 'artifacts',
    'deploy_meta': 'artifacts',
    'reparam_checkpoint': 'artifacts',
    'save_deploy_checkpoint': 'artifacts',
    'save_verified_deploy': 'artifacts',
    'export_onnx': 'onnx_export',
    'check_onnx': 'onnx_export',
}

__all__ = sorted(_EXPORTS)


def lazy_exports(package: str, exports: dict):
    """A module ``__getattr__`` (PEP 562) that imports ``exports[name]``,
    a submodule of ``package``, when ``name`` is first looked up."""
    namespace = importlib.import_module(package).__dict__

    def getattr_(name):
        if name not in exports:
            raise AttributeError(
                f'module {package!r} has no attribute {name!r}')
        value = getattr(
            importlib.import_module(f'.{exports[name]}', package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    return getattr_


__getattr__ = lazy_exports(__name__, _EXPORTS)
