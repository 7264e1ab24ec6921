# Baseline: mmseg's PSPNet ResNet-50-D8 (ImageNet weights) on the RepVGG
# configs' paper schedule. Paper: 77.17 mIoU (val).
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    './_base_/paper_cityscapes_40ep.py'
]

model = dict(data_preprocessor=dict(size=_base_.crop_size))
