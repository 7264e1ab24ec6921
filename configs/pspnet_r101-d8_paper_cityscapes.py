# Baseline: PSPNet ResNet-101-D8 on the paper schedule. Paper: 78.51 mIoU.
_base_ = ['./pspnet_r50-d8_paper_cityscapes.py']

model = dict(pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))
