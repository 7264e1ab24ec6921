"""What the GPU check runs: parts, models, forms, sizes and options.

:func:`make_plan` gives the full check on CUDA, or its tiny dry run on the
CPU (tests/test_tools/test_gpu_check.py), which skips what needs CUDA with
one line each, by name; :mod:`.check` runs it.
"""
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

TOY_CONFIG = 'configs/pspnet_repvgg_toy_cityscapes.py'
_PSP = 'mmseg::pspnet/pspnet_{}-d8_4xb2-{}k_cityscapes-512x1024.py'
#: The parts of a run (``--only``); ``compiled`` only when asked for.
PARTS = ('pool', 'train', 'bench', 'trainbench', 'compiled')
DEFAULT_PARTS = ('pool', 'train', 'bench', 'trainbench')
CUDA_CANDIDATES = (
    ('B1g2-fast', 'configs/pspnet_repvgg_b1g2_fast_cityscapes.py'),
    ('B2-fast', 'configs/pspnet_repvgg_b2_fast_cityscapes.py'),
)
CUDA_BASELINES = (('R50-D8', _PSP.format('r50', 40)), ('R101-D8',
                                                       _PSP.format('r101',
                                                                   40)))
#: Every fast GPU form of each model at the first size (fp32 for reference
#: and the random-weight agreement, shown as information); at the second
#: size the forms the best one is drawn from. The baselines get every
#: form: none of these tricks is RepVGG's own. ``autocast`` (fp32 weights
#: cast in every call) is scored on the toy but not timed: it is the form
#: that keeps fp32 weights, not a fast one.
GPU_FORMS = ('fused', 'reduced', 'reduced_cl', 'reduced_lowres',
             'reduced_cl_lowres', 'reduced_graph', 'reduced_cl_lowres_graph')
GPU_FORMS_SECOND = ('reduced', 'reduced_cl_lowres', 'reduced_graph',
                    'reduced_cl_lowres_graph')
#: The fp16 forms scored with tools/test.py on the trained toy model,
#: against its fused fp32 mIoU (TF32 off).
TOY_FORMS = ('reduced', 'reduced_cl', 'reduced_lowres', 'reduced_cl_lowres',
             'reduced_graph', 'reduced_cl_lowres_graph', 'autocast')
#: torch.compile costs about a minute per model and size: opt-in
#: (``--only ...,compiled``), at the first size.
COMPILED_MODELS = ('B1g2-fast', 'R50-D8', 'R101-D8')
#: The toy trained long enough for its mIoU to mean something (the demo's
#: 40 epochs reach about 62 on the CPU; 12 of 16 iterations keep the run
#: within its budget), SyncBN on every norm layer.
TOY_EPOCHS = 12


def short_run(epochs: int) -> List[str]:
    """Toy config options: ``epochs`` epochs, one validation and one
    checkpoint at the end (and the ReparamHook's deploy_final.pth)."""
    return [
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'param_scheduler.0.end={epochs}',
        f'default_hooks.checkpoint.interval={epochs}'
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
#: What the CPU cannot do, by name: one SKIP line each.
CPU_SKIPS = [
    '--amp training: mmengine\'s AmpOptimWrapper needs CUDA (the dry run '
    'trains in fp32)',
    'SyncBN in a distributed run (tools/dist_train.sh, nccl): needs CUDA '
    '(the dry run trains one process with BN)',
    'fp16 forms (' + ', '.join(TOY_FORMS) + ') scored on the trained toy '
    'and the GPU targets: need CUDA (the dry run scores the fp32 form '
    'lowres and measures fp32 forms)',
    'AMP training numbers: need CUDA (the dry run measures fp32 training '
    'of tiny models)',
]


@dataclass
class Plan:
    """What one run does on its device."""

    device: str
    parts: Sequence[str]
    data: Dict
    options: List[str]
    sizes: List[Tuple[int, int]]
    candidates: Sequence[Tuple[str, str]]
    baselines: Sequence[Tuple[str, str]]
    forms: Sequence[Sequence[str]]  # per size
    toy_forms: Sequence[str]
    warmup: int
    runs: int
    skips: List[str] = field(default_factory=list)
    #: (path, source config, options) of the configs to write first.
    configs: List[Tuple[str, str, List[str]]] = field(default_factory=list)
    #: More tools/benchmark.py options (the dry run's small ceilings).
    bench_args: List[str] = field(default_factory=list)
    #: (label, config) of tools/train_benchmark.py, and its options.
    train_models: Sequence[Tuple[str, str]] = ()
    train_args: List[str] = field(default_factory=list)
    #: Pooling micro-benchmark: (channels, [(H, W), ...]).
    pool_shape: Tuple[int,
                      Sequence[Tuple[int,
                                     int]]] = (2048, ((128, 256), (64, 128)))

    @property
    def cuda(self) -> bool:
        return self.device == 'cuda'


def _target_first(model: Tuple[str, str]) -> int:
    """The models the training target compares first: a run the budget
    stops keeps them."""
    order = ('B1g2-fast', 'R101-D8', 'R50-D8')
    return order.index(model[0]) if model[0] in order else len(order)


def make_plan(device: str, work: str, parts: Sequence[str]) -> Plan:
    """The full check on CUDA, or its tiny dry run on the CPU."""
    config = osp.join(work, 'toy_check.py')
    r18 = osp.join(work, 'r18_tiny.py')
    if device == 'cuda':
        from mmseg_repvgg.benchmark.training import PAPER_CONFIGS
        return Plan(
            device,
            parts,
            dict(nproc=min(8,
                           os.cpu_count() or 1)),
            short_run(TOY_EPOCHS) + [
                'default_hooks.logger.interval=64',
                'train_dataloader.num_workers=4',
                'train_dataloader.persistent_workers=True'
            ] + [
                f'model.{part}.norm_cfg.type=SyncBN'
                for part in ('backbone', 'decode_head', 'auxiliary_head')
            ], [(1024, 2048), (512, 1024)],
            CUDA_CANDIDATES,
            CUDA_BASELINES, [GPU_FORMS, GPU_FORMS_SECOND],
            TOY_FORMS,
            warmup=3,
            runs=10,
            train_models=sorted(PAPER_CONFIGS, key=_target_first),
            train_args=[
                '--warmup', '2', '--iters', '6', '--profile', 'B1g2-fast',
                'R101-D8'
            ])
    return Plan(
        device,
        parts,
        dict(num_train=4, num_val=2, size=(32, 64)),
        short_run(1) + TINY_MODEL, [(32, 64)], [('toy-tiny', config)],
        [('R18-D8-tiny', r18)],
        [('fused', 'fused_cl', 'lowres', 'reduced_cl_lowres_graph')],
        ('lowres', ),
        warmup=1,
        runs=2,
        skips=list(CPU_SKIPS),
        configs=[(r18, _PSP.format('r18', 80), TINY_R18)],
        bench_args=['--matmul-size', '256', '--conv-shape', '16', '32', '64'],
        train_models=(('toy-tiny', config), ('R18-D8-tiny', r18)),
        train_args=[
            '--crop', '32', '64', '--warmup', '1', '--iters', '1',
            '--infer-shape', '32', '64', '--infer-runs', '1', '--profile',
            'toy-tiny', '--dry-run'
        ],
        pool_shape=(16, ((16, 32), (8, 16))))


def parse_parts(text: str) -> List[str]:
    """``--only`` as a list of parts; ValueError names an unknown one."""
    parts = [part.strip() for part in text.split(',') if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise ValueError(f'--only {text!r}: choose parts from '
                         f'{",".join(PARTS)}')
    return parts
