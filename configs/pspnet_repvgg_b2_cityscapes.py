# PSPNet + RepVGG-B2, full dilation (output stride 8): the last two stages
# at stride 1, every 3x3 conv dilated by 2 and 4. Paper: 80.57 mIoU (val).
_base_ = ['./_base_/pspnet_repvgg_cityscapes.py']

model = dict(
    backbone=dict(
        arch='B2',
        dilated_blocks=None,  # every block of the dilated stages
        init_cfg=dict(checkpoint='mmpretrain://repvgg-B2')),
    decode_head=dict(in_channels=2560),  # B2 widths: 160/320/640/2560
    auxiliary_head=dict(in_channels=640))
