# PSPNet on RepVGG-B1g2 (output stride 8) with the paper's Cityscapes
# schedule; the variants change the arch, dilations and head channels.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py', './paper_cityscapes_40ep.py',
    './models/repvgg_d8.py'
]

model = dict(
    _base_.repvgg_segmentor,
    data_preprocessor=dict(size=_base_.crop_size),  # pads batches to crops
    # PSP head on the last stage, auxiliary FCN head on the third.
    decode_head=dict(in_channels=2048),
    auxiliary_head=dict(in_channels=512))
custom_hooks = _base_.custom_hooks + _base_.reparam_hooks
