# mmseg's Cityscapes data settings (512x1024 crops of 2048x1024 images, the
# mmseg default the paper's PSPNet numbers are usually compared under), with
# the project's dataset type: mmseg's CityscapesDataset that fails with a
# clear message when the data root or its label files are missing.
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
# The root of every config here: the one place that imports the plugin
# (mmengine applies custom_imports of the merged config).
custom_imports = dict(imports=['mmseg_repvgg'], allow_failed_imports=False)

dataset_type = 'CheckedCityscapesDataset'
train_dataloader = dict(dataset=dict(type=dataset_type))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = val_dataloader
