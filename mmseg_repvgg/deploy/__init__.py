"""Everything a user ships: deploy artifacts, ONNX export and the deploy
forms (:func:`deploy_model`). Training needs none of it, so ``import
mmseg_repvgg`` loads nothing here; the names load on first use."""
import importlib

#: Public name -> the submodule that defines it (loaded on first access).
_EXPORTS = {
    name: module
    for module, names in (
        ('api', 'deploy_model deploy_segmentors'),
        ('deployed', 'DeployedModel deployed_segmentor'),
        ('forms', 'NAMED_FORMS Form FormUnavailable available_forms '
         'check_form parse_form why_unavailable'),
        ('artifacts', 'ReparamResult deploy_config deploy_meta '
         'reparam_checkpoint save_deploy_checkpoint save_verified_deploy'),
        ('onnx_export', 'export_onnx check_onnx'),
    )
    for name in names.split()
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
