# mmseg's Cityscapes data settings (512x1024 crops) with the project's
# dataset type, which fails clearly on a missing root or label file.
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
# The one place that imports the plugin: every config here inherits it.
custom_imports = dict(imports=['mmseg_repvgg'], allow_failed_imports=False)

dataset_type = 'CheckedCityscapesDataset'
train_dataloader = dict(dataset=dict(type=dataset_type))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = val_dataloader
