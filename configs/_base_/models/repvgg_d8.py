# A RepVGG-B1g2 backbone with output stride 8 for drop-in use in mmseg's
# decode heads. It sits in its own variable (not ``model``) so a config can
# take mmseg's model base for the head and this for the backbone:
#   model = dict(backbone=dict(_base_.repvgg_d8, _delete_=True))
# "Full" dilation as in the paper: the last two stages keep stride 1 and
# dilate every 3x3 conv by 2 and 4. Stage widths of B1g2: 128, 256, 512,
# 2048 (the stem has 64). No custom_imports here: it sits beside bases that
# have it, and mmengine refuses a key that two sibling bases both define.

repvgg_d8 = dict(
    type='RepVGG',
    arch='B1g2',
    strides=(2, 2, 1, 1),
    dilations=(1, 1, 2, 4),
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    # ImageNet weights: mmpretrain's for B1g2, downloaded on first use into
    # torch's hub cache ($TORCH_HOME) and SHA-256-checked. A local file of
    # any layout (official, timm, mmpretrain, ours) works too, and offline:
    # --cfg-options model.backbone.init_cfg.checkpoint=PATH; from scratch:
    # --cfg-options model.backbone.init_cfg=None
    init_cfg=dict(
        type='RepVGGPretrained', checkpoint='mmpretrain://repvgg-B1g2'))
# What every RepVGG segmentor config here sets on top of mmseg's model base:
#   model = dict(_base_.repvgg_segmentor, decode_head=..., ...)
repvgg_segmentor = dict(
    pretrained=None,  # mmseg's base names a ResNet; init_cfg loads RepVGG's
    backbone=dict(repvgg_d8, _delete_=True))
# Test (and ship) the re-parameterized model: checkpoints checked as they
# load, the model fused before each test epoch, deploy checkpoints written
# beside the training ones at the end. ReparamHook is one entry for the
# small hooks CheckpointFitHook, FuseBeforeTestHook, SaveDeployHook (and
# FusedValHook with validate_fused=True); a config may list those instead.
#   custom_hooks = _base_.custom_hooks + _base_.reparam_hooks
reparam_hooks = [dict(type='ReparamHook', save_deploy=True)]
