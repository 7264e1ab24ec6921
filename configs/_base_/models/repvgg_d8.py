# A RepVGG-B1g2 backbone at output stride 8 (the paper's "full" dilation),
# beside mmseg's model base: model = dict(_base_.repvgg_segmentor, ...).
# No custom_imports: mmengine refuses a key two sibling bases both define.

repvgg_d8 = dict(
    type='RepVGG',
    arch='B1g2',
    strides=(2, 2, 1, 1),
    dilations=(1, 1, 2, 4),
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    # mmpretrain's ImageNet weights, downloaded once; any local layout:
    # --cfg-options model.backbone.init_cfg.checkpoint=PATH
    init_cfg=dict(
        type='RepVGGPretrained', checkpoint='mmpretrain://repvgg-B1g2'))
repvgg_segmentor = dict(
    pretrained=None,  # mmseg's base names a ResNet; init_cfg loads RepVGG's
    backbone=dict(repvgg_d8, _delete_=True))
# Checkpoints checked as they load, the model fused to test, deploy
# checkpoints written at the end (custom_hooks += reparam_hooks).
reparam_hooks = [dict(type='ReparamHook', save_deploy=True)]
