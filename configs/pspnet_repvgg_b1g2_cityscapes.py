# PSPNet + RepVGG-B1g2, full dilation (output stride 8): the last two stages
# at stride 1, every 3x3 conv dilated by 2 and 4. Paper: 78.70 mIoU (val).
# The base's model (B1g2 widths: 128/256/512/2048), every block dilated.
_base_ = ['./_base_/pspnet_repvgg_cityscapes.py']

model = dict(backbone=dict(dilated_blocks=None))
