"""Everything a user ships: deploy artifacts (:mod:`.artifacts`), ONNX
export (:mod:`.onnx_export`) and the deploy forms (:func:`deploy_model`,
parsed by :mod:`.forms`, made by :mod:`.steps` from the leaves
:mod:`.kernels` and :mod:`.backends`).

Training needs none of it, so ``import mmseg_repvgg`` loads nothing here:
the names below load their module on first use.
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
