"""Everything a user ships: fuse, save, export and run a segmentor's
deploy forms.

* :mod:`.fuse`: the whole segmentor fused (backbone blocks, heads'
  conv+BN, auxiliary head dropped) and checked equal to the unfused one.
* :mod:`.artifacts`: deploy checkpoints and configs, strict loading.
* :mod:`.onnx_export`: ONNX export and its onnxruntime check.
* :mod:`.forms`: :func:`deploy_model`, the one entry to every precision
  and runtime form (fp32, low-res PSP, int8, bf16/fp16 where native,
  onnxruntime, OpenVINO), and which of them run on this machine.
* :mod:`.machine`: the one place that knows the CPU's and GPU's features.
* :mod:`.int8`, :mod:`.psp_lowres`, :mod:`.runtimes`: the forms' pieces.
"""
from .artifacts import (DEPLOY_META_KEY, ReparamResult, build_segmentor,
                        check_state_dict_matches, checkpoint_state_dict,
                        deploy_config, deploy_meta, fit_to_checkpoint,
                        is_deploy_checkpoint, load_segmentor,
                        reparam_checkpoint, save_deploy_checkpoint,
                        save_verified_deploy)
from .deployed import DeployedModel, deploy_model, deployed_segmentor
from .forms import FORMS, Form, FormUnavailable, available_forms
from .fuse import (TRAIN_ONLY_HEADS, FusionMismatchError, FusionReport,
                   check_fused_equal, fuse_segmentor, random_inputs,
                   relative_error, segmentor_logits)

__all__ = [
    'DEPLOY_META_KEY', 'FORMS', 'TRAIN_ONLY_HEADS', 'DeployedModel', 'Form',
    'FormUnavailable', 'FusionMismatchError', 'FusionReport', 'ReparamResult',
    'available_forms', 'build_segmentor', 'check_fused_equal',
    'check_state_dict_matches', 'checkpoint_state_dict', 'deploy_config',
    'deploy_meta', 'deploy_model', 'deployed_segmentor', 'fit_to_checkpoint',
    'fuse_segmentor', 'is_deploy_checkpoint', 'load_segmentor',
    'random_inputs', 'relative_error', 'reparam_checkpoint',
    'save_deploy_checkpoint', 'save_verified_deploy', 'segmentor_logits'
]
