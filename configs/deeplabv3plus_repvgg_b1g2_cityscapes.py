# Drop-in example: mmseg's DeepLabV3+ head on RepVGG-B1g2 (output stride 8)
# with the paper's Cityscapes schedule. Not in the paper; no reference mIoU.
_base_ = [
    'mmseg::_base_/models/deeplabv3plus_r50-d8.py',
    './_base_/paper_cityscapes_40ep.py', './_base_/models/repvgg_d8.py'
]

model = dict(
    _base_.repvgg_segmentor,
    data_preprocessor=dict(size=_base_.crop_size),
    # ASPP on the last stage, low-level features from the first.
    decode_head=dict(in_channels=2048, c1_in_channels=128),
    auxiliary_head=dict(in_channels=512))
custom_hooks = _base_.custom_hooks + _base_.reparam_hooks
