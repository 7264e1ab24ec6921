# The paper's Cityscapes recipe (RepVGG, section 4.3), shared by the RepVGG
# configs and the ResNet baselines: SGD (momentum 0.9, weight decay 1e-4),
# lr 0.01 with poly decay (power 0.9) to 0, global batch 16 on 8 GPUs,
# 40 epochs over the 2975 training images.
#
# Epoch-based loop, not mmseg's usual iteration count: "40 epochs" stays
# 40 epochs whatever the number of GPUs. 8 GPUs x 2 images give
# ceil(2975 / 16) = 186 iterations per epoch, 7440 in all; on fewer GPUs
# (--auto-scale-lr scales the lr to the smaller batch) the epochs take more
# iterations instead of the run silently covering fewer epochs. The poly
# decay still updates every iteration (convert_to_iter_based).
_base_ = [
    './datasets/cityscapes_checked.py', 'mmseg::_base_/default_runtime.py'
]

num_gpus = 8  # the paper's setting; dist_train.sh CONFIG 8
train_dataloader = dict(
    batch_size=2,  # per GPU: 8 x 2 = 16 images per iteration
    # An epoch-based loop needs a sampler with an end (mmseg's Cityscapes
    # base uses the InfiniteSampler of iteration-based schedules).
    sampler=dict(type='DefaultSampler', shuffle=True))
# Scales the lr linearly when the real global batch differs from 16
# (tools/train.py --auto-scale-lr).
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
# Validate (500 val images) and save every 4 epochs (744 iterations); keep
# the last two checkpoints and the one with the best mIoU.
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook with atomic writes, saving the new
    # checkpoint before max_keep_ckpts removes the oldest (mmseg_repvgg).
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
# Reseed every iteration from (seed, counter): a run resumed after a crash
# replays the same augmentation and dropout draws, so its weights equal an
# uninterrupted run's (tests/test_engine/test_resume.py). The seed is the run's
# (randomness.seed, or the one mmengine draws and stores in checkpoints).
custom_hooks = [dict(type='ReseedHook')]
