# A small PSPNet-RepVGG trained from scratch on the built-in toy Cityscapes
# on a CPU in minutes (tools/demo.py): the paper configs shrunk to a narrow
# 1-2-4-1 RepVGG with BN, a larger lr and a smaller batch.
_base_ = ['./_base_/pspnet_repvgg_cityscapes.py']

data_root = 'data/toy_cityscapes/'
crop_size = (128, 256)  # whole images: the toy set is small already
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        # A custom arch (a dict) replaces the base's name ('B1g2').
        arch=dict(
            num_blocks=(1, 2, 4, 1), width_factor=(0.5, ) * 4, _delete_=True),
        norm_cfg=norm_cfg,
        init_cfg=None),  # from scratch
    # Widths 0.5 x (64, 128, 256, 512): the stages give 32/64/128/256.
    decode_head=dict(in_channels=256, channels=64, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=32, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(256, 128),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# 4 images, 16 iterations per epoch; lr 0.1 and 40 epochs were chosen on the
# toy val set (the README gives the mIoU they reach).
num_gpus = 1
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
auto_scale_lr = dict(base_batch_size=4)

max_epochs = 40  # 640 iterations
optim_wrapper = dict(optimizer=dict(lr=0.1))
param_scheduler = [dict(_base_.param_scheduler[0], end=max_epochs)]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(
    logger=dict(interval=16),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
    # --show-dir draws every 4th test image (ground truth | prediction).
    visualization=dict(interval=4))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
