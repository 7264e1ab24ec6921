# A RepVGG-B1g2 backbone at output stride 8 ("full" dilation as in the
# paper: the last two stages at stride 1, dilated by 2 and 4), in its own
# variable so a config can take mmseg's model base for the head:
#   model = dict(_base_.repvgg_segmentor, decode_head=..., ...)
# No custom_imports: mmengine refuses a key two sibling bases both define.

repvgg_d8 = dict(
    type='RepVGG',
    arch='B1g2',
    strides=(2, 2, 1, 1),
    dilations=(1, 1, 2, 4),
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    # mmpretrain's ImageNet weights, downloaded once and SHA-256-checked; a
    # local file of any layout: --cfg-options
    # model.backbone.init_cfg.checkpoint=PATH; none: ...init_cfg=None
    init_cfg=dict(
        type='RepVGGPretrained', checkpoint='mmpretrain://repvgg-B1g2'))
repvgg_segmentor = dict(
    pretrained=None,  # mmseg's base names a ResNet; init_cfg loads RepVGG's
    backbone=dict(repvgg_d8, _delete_=True))
# Checkpoints checked as they load, the model fused before each test, deploy
# checkpoints written at the end:
#   custom_hooks = _base_.custom_hooks + _base_.reparam_hooks
reparam_hooks = [dict(type='ReparamHook', save_deploy=True)]
