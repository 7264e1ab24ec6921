# PSPNet on a RepVGG backbone (B1g2, output stride 8) with the paper's
# Cityscapes schedule. The variant configs change only the arch, the
# dilation pattern and the channels the heads take from it.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py', './paper_cityscapes_40ep.py',
    './models/repvgg_d8.py'
]
custom_imports = dict(imports=['mmseg_repvgg'], allow_failed_imports=False)

model = dict(
    pretrained=None,  # the backbone's init_cfg loads the ImageNet weights
    data_preprocessor=dict(size=_base_.crop_size),  # pads batches to crops
    backbone=dict(_base_.repvgg_d8, _delete_=True),
    # PSP head on the last stage, auxiliary FCN head on the third.
    decode_head=dict(in_channels=2048),
    auxiliary_head=dict(in_channels=512))
# Test (and ship) the re-parameterized model: fused before each test epoch,
# deploy checkpoints written beside the training ones at the end.
custom_hooks = _base_.custom_hooks + [
    dict(type='ReparamHook', save_deploy=True)
]
