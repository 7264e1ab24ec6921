"""Everything a user ships: deploy artifacts and the deploy forms.

Nothing here is loaded by ``import mmseg_repvgg`` (what a config's
``custom_imports`` runs): training needs none of it. The names below load
their module on first use.

* :mod:`.artifacts`: deploy checkpoint + config (the fused model, see
  :func:`mmseg_repvgg.models.fuse_segmentor`), checked fused == unfused.
* :mod:`.onnx_export`: ONNX export of the fused segmentor, checked in
  onnxruntime.
* :mod:`.api`: :func:`deploy_model`, the one entry to every form, and
  :func:`deploy_segmentors`, the calibrate-deploy-wrap recipe;
  :mod:`.forms` forms composed from parts (the one parser of specs, and
  what runs here), :mod:`.steps` how a form is made, :mod:`.auto` the
  fastest form measured here, :mod:`.timing` how anything is timed;
  :mod:`.cuda_graphs` replays the ``*_graph`` forms as CUDA graphs.
* :mod:`.kernels`, :mod:`.backends`: leaves only the steps import
  (hand-written CPU kernels; one module per runtime).
"""
import importlib

#: Public name -> the submodule that defines it (loaded on first access).
_EXPORTS = {
    'DeployedModel': 'deployed',
    'deploy_model': 'api',
    'deploy_segmentors': 'api',
    'deployed_segmentor': 'deployed',
    'NAMED_FORMS': 'forms',
    'Form': 'forms',
    'FormUnavailable': 'forms',
    'available_forms': 'forms',
    'check_form': 'forms',
    'parse_form': 'forms',
    'why_unavailable': 'forms',
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
