# Baseline: mmseg's PSPNet ResNet-50-D8 (ResNetV1c, ImageNet weights from
# open-mmlab://resnet50_v1c) on the same paper schedule as the RepVGG
# configs, for a side-by-side comparison. Paper: 77.17 mIoU (val).
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    './_base_/paper_cityscapes_40ep.py'
]

model = dict(data_preprocessor=dict(size=_base_.crop_size))
