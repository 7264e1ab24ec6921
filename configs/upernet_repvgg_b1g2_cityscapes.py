# Drop-in example: mmseg's UPerNet head on RepVGG-B1g2 (plain strides, as
# for a feature pyramid) with the paper's schedule. No reference mIoU.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', './_base_/paper_cityscapes_40ep.py',
    './_base_/models/repvgg_d8.py'
]

model = dict(
    _base_.repvgg_segmentor,
    data_preprocessor=dict(size=_base_.crop_size),
    backbone=dict(
        _base_.repvgg_d8,
        strides=(2, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        _delete_=True),
    decode_head=dict(in_channels=[128, 256, 512, 2048]),
    auxiliary_head=dict(in_channels=512))
custom_hooks = _base_.custom_hooks + _base_.reparam_hooks
