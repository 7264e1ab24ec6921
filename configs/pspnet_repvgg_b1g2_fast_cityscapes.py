# PSPNet + RepVGG-B1g2 "fast": output stride 8, but only the last 5 3x3
# layers dilated (4 of the third stage, 1 of the last). Paper: 78.88 mIoU.
_base_ = ['./pspnet_repvgg_b1g2_cityscapes.py']

model = dict(backbone=dict(dilated_blocks=(0, 0, 4, 1)))
