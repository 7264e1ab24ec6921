# PSPNet + RepVGG-B1g2, full dilation (output stride 8): the last two stages
# at stride 1, every 3x3 conv dilated by 2 and 4. Paper: 78.70 mIoU (val).
_base_ = ['./_base_/pspnet_repvgg_cityscapes.py']

model = dict(
    backbone=dict(
        arch='B1g2',
        strides=(2, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        dilated_blocks=None,  # every block of the dilated stages
        init_cfg=dict(checkpoint='mmpretrain://repvgg-B1g2')),
    decode_head=dict(in_channels=2048),  # B1g2 widths: 128/256/512/2048
    auxiliary_head=dict(in_channels=512))
