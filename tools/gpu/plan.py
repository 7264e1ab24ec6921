"""What the GPU check (issue 19) runs: the models, forms, sizes and options.

:func:`make_plan` gives the full check on CUDA, or its tiny dry run on the
CPU (tests/test_gpu_check.py), which skips what needs CUDA with one line
each; :mod:`.gpu_check` runs it.
"""
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

TOY_CONFIG = 'configs/pspnet_repvgg_toy_cityscapes.py'
_PSP = 'mmseg::pspnet/pspnet_{}-d8_4xb2-{}k_cityscapes-512x1024.py'
CUDA_CANDIDATES = (
    ('B1g2-fast', 'configs/pspnet_repvgg_b1g2_fast_cityscapes.py'),
    ('B1g2', 'configs/pspnet_repvgg_b1g2_cityscapes.py'),
    ('B2-fast', 'configs/pspnet_repvgg_b2_fast_cityscapes.py'),
    ('B2', 'configs/pspnet_repvgg_b2_cityscapes.py'),
)
R50_D8 = _PSP.format('r50', 40)
R101_D8 = _PSP.format('r101', 40)
CUDA_BASELINES = (('R50-D8', R50_D8), ('R101-D8', R101_D8))
#: torch.compile costs about a minute per model and size: only the models
#: the targets compare, at the first size, after everything else.
COMPILED_MODELS = ('B1g2-fast', 'B2-fast', 'R50-D8', 'R101-D8')
#: One epoch of the toy set (16 iterations of 4 images on CUDA), its
#: validation, a checkpoint and the ReparamHook's deploy_final.pth.
SHORT_RUN = [
    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
    'param_scheduler.0.end=1', 'default_hooks.checkpoint.interval=1'
]
#: tests/conftest.py's tiny_toy_options: a narrow model on 32x64 images.
TINY_MODEL = [
    'model.backbone.arch.num_blocks=[1,1,1,1]',
    'model.backbone.arch.width_factor=[0.25,0.25,0.25,0.25]',
    'model.decode_head.in_channels=128', 'model.decode_head.channels=8',
    'model.auxiliary_head.in_channels=64', 'model.auxiliary_head.channels=8',
    'model.data_preprocessor.size=(32,64)',
    'train_dataloader.dataset.pipeline.2.scale=(64,32)',
    'train_dataloader.dataset.pipeline.3.crop_size=(32,64)',
    'val_dataloader.dataset.pipeline.1.scale=(64,32)',
    'test_dataloader.dataset.pipeline.1.scale=(64,32)',
    'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1'
] + [
    f'{split}_dataloader.{key}' for split in ('train', 'val', 'test')
    for key in ('num_workers=0', 'persistent_workers=False')
]

#: mmseg's PSPNet R18-D8 with 16 stem and base channels (stages of 16 to
#: 128): the dry run's baseline, built and measured in a second.
TINY_R18 = [
    'model.backbone.stem_channels=16', 'model.backbone.base_channels=16',
    'model.decode_head.in_channels=128', 'model.decode_head.channels=8',
    'model.auxiliary_head.in_channels=64', 'model.auxiliary_head.channels=8'
]


@dataclass
class Plan:
    """What one run does on its device."""

    device: str
    data: Dict
    options: List[str]
    sizes: List[Tuple[int, int]]
    candidates: Sequence[Tuple[str, str]]
    baselines: Sequence[Tuple[str, str]]
    forms: Sequence[str]
    warmup: int
    runs: int
    compiled: bool
    skips: List[str] = field(default_factory=list)
    #: (path, source config, options) of the configs to write first.
    configs: List[Tuple[str, str, List[str]]] = field(default_factory=list)
    #: More tools/benchmark.py options (the dry run's small ceilings).
    bench_args: List[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device == 'cuda'


def make_plan(device: str, work: str, compiled: bool = True) -> Plan:
    """The full check on CUDA, or its tiny dry run on the CPU."""
    config = osp.join(work, 'toy_check.py')
    r18 = osp.join(work, 'r18_tiny.py')
    if device == 'cuda':
        return Plan(
            device,
            dict(nproc=min(8,
                           os.cpu_count() or 1)),
            SHORT_RUN + ['default_hooks.logger.interval=4'] + [
                f'model.{part}.norm_cfg.type=SyncBN'
                for part in ('backbone', 'decode_head', 'auxiliary_head')
            ], [(1024, 2048), (512, 1024)],
            CUDA_CANDIDATES,
            CUDA_BASELINES, ['fused', 'reduced', 'reduced_cl'],
            warmup=3,
            runs=10,
            compiled=compiled)
    return Plan(
        device,
        dict(num_train=4, num_val=2, size=(32, 64)),
        SHORT_RUN + TINY_MODEL, [(32, 64)], [('toy-tiny', config)],
        [('R18-D8-tiny', r18)], ['fused', 'fused_cl'],
        warmup=1,
        runs=2,
        compiled=False,
        skips=[
            '--amp training: mmengine\'s AmpOptimWrapper needs CUDA (the dry '
            'run trains in fp32)',
            'SyncBN in a distributed run (tools/dist_train.sh, nccl): needs '
            'CUDA (the dry run trains one process with BN)',
            'fp16 forms (reduced, reduced_cl, compiled) and the fp16 '
            'targets: need CUDA (the dry run measures fp32 forms)'
        ],
        configs=[(r18, _PSP.format('r18', 80), TINY_R18)],
        bench_args=['--matmul-size', '256', '--conv-shape', '16', '32', '64'])
