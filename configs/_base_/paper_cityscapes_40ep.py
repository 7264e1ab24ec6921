# The paper's Cityscapes recipe (RepVGG, section 4.3): SGD (momentum 0.9,
# weight decay 1e-4), lr 0.01 with poly decay (power 0.9) to 0, global batch
# 16 on 8 GPUs, 40 epochs. Epoch-based, so "40 epochs" holds on any number
# of GPUs (186 iterations per epoch on 8); the decay is per iteration.
_base_ = [
    './datasets/cityscapes_checked.py', 'mmseg::_base_/default_runtime.py'
]

num_gpus = 8  # the paper's setting; dist_train.sh CONFIG 8
train_dataloader = dict(
    batch_size=2,  # per GPU: 8 x 2 = 16 images per iteration
    # An epoch-based loop needs a sampler with an end (not mmseg's Infinite).
    sampler=dict(type='DefaultSampler', shuffle=True))
# --auto-scale-lr scales the lr by the real global batch over 16.
auto_scale_lr = dict(enable=False, base_batch_size=num_gpus * 2)

max_epochs = 40
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        begin=0,
        end=max_epochs,
        by_epoch=True,
        convert_to_iter_based=True)
]
# Validate and save every 4 epochs; keep the last two and the best mIoU.
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook with atomic writes in a crash-safe order.
    checkpoint=dict(
        type='AtomicCheckpointHook',
        by_epoch=True,
        interval=4,
        max_keep_ckpts=2,
        save_best='mIoU',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # mmseg's hook minus its "draw is False" warning; --show-dir draws.
    visualization=dict(type='QuietSegVisualizationHook'))
log_processor = dict(by_epoch=True)
# Ground truth | prediction, each captioned, class names in a legend below.
visualizer = dict(type='SegPairVisualizer')
# Reseed from (seed, counter): a resumed run equals an uninterrupted one.
custom_hooks = [dict(type='ReseedHook')]
