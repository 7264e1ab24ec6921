"""mmseg model-zoo training numbers of a config here: s/iter (optimizer
steps on one synthetic batch at the crop size, fp32 or AMP), peak memory,
the fused fp32 form's fps. One process and GPU: SyncBN runs as BN."""
import copy
import functools
import gc
import statistics
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from ..checkpoint import build_segmentor
from ..deploy.api import deploy_model
from ..deploy.timing import median_seconds, synchronizer, time_calls
from ..models.fuse import random_inputs
from .measure import PeakMemory, op_times, top_ops
from .report import Bar, chart_title, markdown_table, write_report

#: Precisions a training row can have.
PRECISIONS = ('fp32', 'amp')


@dataclass
class TrainSettings:
    """How to measure (defaults: the paper's crop and per-GPU batch)."""

    crop: Tuple[int, int] = (512, 1024)
    batch: int = 2
    warmup: int = 3
    iters: int = 8
    infer_shape: Tuple[int, int] = (1024, 2048)
    infer_warmup: int = 2
    infer_runs: int = 5
    device: str = 'cuda'
    precisions: Tuple[str, ...] = PRECISIONS
    seed: int = 0
    #: Configs (by name) whose training step is also profiled once.
    profile: Tuple[str, ...] = ()


def synthetic_batch(batch: int, crop: Tuple[int, int], num_classes: int,
                    seed: int) -> Dict:
    """One batch as mmseg's dataloader gives it, at the crop size."""
    gen = torch.Generator().manual_seed(seed)
    height, width = crop
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(
            torch.randint(
                0, 256, (3, height, width), generator=gen, dtype=torch.uint8))
        sample = SegDataSample(
            metainfo=dict(
                img_shape=crop, ori_shape=crop, pad_shape=crop, flip=False))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(
                0, num_classes, (1, height, width), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _release(device: str) -> None:
    gc.collect()
    if str(device).startswith('cuda'):
        torch.cuda.empty_cache()


def measure_training(cfg,
                     template: nn.Module,
                     settings: TrainSettings,
                     amp: bool,
                     profile: bool = False) -> Dict:
    """``s_per_iter`` (median of ``iter_s``), ``peak_mb`` and its
    ``method`` of training a copy of ``template`` (``cfg``'s model, on the
    CPU), and with ``profile`` :func:`profile_step`'s ``profile``."""
    device, sync = settings.device, synchronizer(settings.device)
    model = copy.deepcopy(template).to(device).train()
    # The preprocessor pads each batch to its size: the crop measured.
    model.data_preprocessor.size = tuple(settings.crop)
    optim = dict(cfg.optim_wrapper)
    if amp:  # as mmseg's tools/train.py --amp
        optim.update(type='AmpOptimWrapper', loss_scale='dynamic')
    optim_wrapper = build_optim_wrapper(model, optim)
    data = synthetic_batch(settings.batch, settings.crop,
                           cfg.model.decode_head.num_classes, settings.seed)
    step = functools.partial(model.train_step, data, optim_wrapper)
    with PeakMemory(device) as probe:
        times = time_calls(step, settings.iters, sync, settings.warmup)
    cuda = str(device).startswith('cuda')
    # CUDA: the whole peak since the probe reset it (weights, gradients,
    # optimizer state, activations), as mmengine logs it; CPU: growth.
    peak = torch.cuda.max_memory_allocated() if cuda else probe.bytes
    result = dict(
        s_per_iter=statistics.median(times),
        iter_s=[round(t, 4) for t in times],
        peak_mb=None if peak is None else peak / 1024**2,
        method='torch.cuda.max_memory_allocated' if cuda else probe.method)
    if profile:
        result['profile'] = profile_step(step, device)
    del model, optim_wrapper, step
    _release(device)
    return result


#: Profiler keys of a training step's parts (totals include their kernels).
STEP_PARTS = dict(
    conv=('aten::convolution', 'aten::convolution_backward'),
    batch_norm=('aten::batch_norm', 'aten::native_batch_norm_backward',
                'aten::cudnn_batch_norm_backward'),
    optimizer=('Optimizer.step#SGD.step', ))


def profile_step(step, device: str, top: int = 8) -> Dict:
    """ms of one training step in convolutions, BatchNorm, the optimizer
    and all (device time on CUDA), and the ops with most time of their own."""
    ops, _ = op_times(step, device)
    result = {
        f'{part}_ms': sum(total for key, total, _, _ in ops if key in keys)
        for part, keys in STEP_PARTS.items()
    }
    result['all_ms'] = sum(own for _, _, own, _ in ops)
    result['top_ops'] = top_ops(ops, top)
    return result


def measure_inference(template: nn.Module, settings: TrainSettings) -> Dict:
    """Batch-1 fps of ``template``'s fused fp32 form at the infer_shape."""
    deployed = deploy_model(template.eval(), 'fused', device=settings.device)
    x = random_inputs((1, 3, *settings.infer_shape),
                      settings.seed).to(settings.device)
    run = functools.partial(deployed, x)
    ms = 1000.0 * median_seconds(run, settings.infer_runs, settings.device,
                                 settings.infer_warmup)
    del deployed, run
    _release(settings.device)
    return dict(ms=ms, fps=1000.0 / ms, form='fused fp32')


def benchmark_config(name: str,
                     cfg,
                     settings: TrainSettings,
                     log=print) -> Dict:
    """Every training precision of ``settings`` and the inference fps of
    one config; a failing part is recorded, not raised."""
    if str(settings.device).startswith('cuda'):
        # The config's own setting, as mmengine's Runner applies it.
        torch.backends.cudnn.benchmark = bool(
            (cfg.get('env_cfg') or {}).get('cudnn_benchmark', False))
    row: Dict = dict(name=name, train={}, skips={})
    torch.manual_seed(settings.seed)
    template = build_segmentor(cfg)  # once: each part trains a copy
    for precision in settings.precisions:
        if precision == 'amp' and not str(settings.device).startswith('cuda'):
            reason = "AMP training needs CUDA (mmengine's AmpOptimWrapper)"
            row['skips'][precision] = reason
            log(f'{name}: {precision} training skipped: {reason}')
            continue
        row['train'][precision] = _guarded(
            lambda: measure_training(cfg, template, settings, precision ==
                                     'amp', name in settings.profile),
            settings.device)
        log(f'{name}: {precision} training: ' +
            _summary(row['train'][precision], 's_per_iter', 's/iter'))
    row['inference'] = _guarded(lambda: measure_inference(template, settings),
                                settings.device)
    log(f'{name}: inference: ' + _summary(row['inference'], 'fps', 'fps'))
    return row


def _summary(part: Dict, key: str, unit: str) -> str:
    if 'error' in part:
        return f'failed: {part["error"]}'
    peak = part.get('peak_mb')
    return f'{part[key]:.3f} {unit}' + ('' if peak is None else
                                        f', peak {peak:.0f} MiB')


def _guarded(measure, device: str) -> Dict:
    try:
        return measure()
    except Exception as err:  # keep the other configs' numbers
        _release(device)
        return dict(error=f'{type(err).__name__}: {err}'[:300])


#: The six paper configs: (label, config).
PAPER_CONFIGS = (
    ('B1g2-fast', 'configs/pspnet_repvgg_b1g2_fast_cityscapes.py'),
    ('B1g2', 'configs/pspnet_repvgg_b1g2_cityscapes.py'),
    ('B2-fast', 'configs/pspnet_repvgg_b2_fast_cityscapes.py'),
    ('B2', 'configs/pspnet_repvgg_b2_cityscapes.py'),
    ('R50-D8', 'configs/pspnet_r50-d8_paper_cityscapes.py'),
    ('R101-D8', 'configs/pspnet_r101-d8_paper_cityscapes.py'),
)


def paper_miou(metafile: str) -> Dict[str, float]:
    """``{config name: the paper's mIoU}`` from the project's metafile."""
    import yaml
    with open(metafile) as f:
        models = yaml.safe_load(f).get('Models') or []
    found = {}
    for model in models:
        results = model.get('Results') or []
        # One result as a mapping (this metafile), or a list (mmseg's).
        for result in [results] if isinstance(results, dict) else results:
            miou = (result.get('Metrics') or {}).get('mIoU')
            if miou is not None:
                found[model['Name']] = float(miou)
    return found


def _cell(part: Optional[Dict], key: str, scale: float, spec: str) -> str:
    if not part:
        return 'skipped'
    if 'error' in part:
        return 'failed'
    value = part.get(key)
    return '—' if value is None else format(value * scale, spec)


def render_table(results: Dict) -> List[str]:
    """The Markdown table of ``results['rows']``, mmseg zoo style."""
    settings = results['settings']
    crop = 'x'.join(map(str, settings['crop']))
    infer = 'x'.join(map(str, settings['infer_shape']))
    mark = ' (dry run)' if results.get('dry_run') else ''
    machine = results.get('machine')  # a string in older files
    where = (
        machine.get('description', '?')
        if isinstance(machine, dict) else machine or '?')
    method = next(
        (part['method'] for row in results['rows']
         for part in (row.get('train') or {}).values() if part.get('method')),
        'not measured')
    header = [
        'config', 'paper mIoU', 's/iter fp32', 's/iter AMP',
        'memory fp32 (GB)', 'memory AMP (GB)', 'fps (fused fp32)'
    ]
    rows = []
    for row in results['rows']:
        train = row.get('train') or {}
        miou = row.get('paper_miou')
        rows.append([
            row['name'] + mark, '—' if miou is None else f'{miou:.2f}',
            _cell(train.get('fp32'), 's_per_iter', 1, '.3f'),
            _cell(train.get('amp'), 's_per_iter', 1, '.3f'),
            _cell(train.get('fp32'), 'peak_mb', 1 / 1024, '.2f'),
            _cell(train.get('amp'), 'peak_mb', 1 / 1024, '.2f'),
            _cell(row.get('inference'), 'fps', 1, '.2f')
        ])
    return [
        f'Training at crop {crop}, batch {settings["batch"]} per GPU, '
        f'median of {settings["iters"]} iterations after '
        f'{settings["warmup"]} warm-ups, synthetic data, the config\'s '
        f'optimizer; fp32 as torch runs it by default (cuDNN convs may use '
        f'TF32), AMP as tools/train.py --amp; memory: {method}; inference '
        f'batch 1 at {infer}, fused fp32; on {where}{mark}.', ''
    ] + markdown_table(header, rows) + profile_lines(results)


def profile_lines(results: Dict) -> List[str]:
    """One line per profiled training step: where its time goes."""
    lines = []
    for row in results['rows']:
        for precision, part in (row.get('train') or {}).items():
            prof = part.get('profile')
            if not prof:
                continue
            top = ', '.join(f'{name} {ms:.1f}'
                            for name, ms, _ in prof['top_ops'][:4])
            lines.append(
                f'- {row["name"]} {precision} step, profiled: '
                f'{prof["all_ms"]:.1f} ms in all, convolutions (forward and '
                f'backward) {prof["conv_ms"]:.1f}, BatchNorm '
                f'{prof["batch_norm_ms"]:.1f}, optimizer '
                f'{prof["optimizer_ms"]:.1f}; most time of their own: {top}')
    return [''] + lines if lines else []


def training_bars(results: Dict) -> List[Bar]:
    """A bar per config and training precision: seconds per iteration."""
    return [(row['name'], precision, f'{precision} training',
             part['s_per_iter'], min(part['iter_s']), max(part['iter_s']))
            for row in results['rows']
            for precision, part in (row.get('train') or {}).items()
            if 's_per_iter' in part]


def write_training_report(results: Dict, out_dir: str) -> List[str]:
    """``train_benchmark.json``, ``.md`` and ``.png``; returns the table."""
    table = render_table(results)
    crop = 'x'.join(map(str, results['settings']['crop']))
    title = chart_title(
        results, f'training at crop {crop}, batch '
        f'{results["settings"]["batch"]} per GPU')
    write_report(results, out_dir, 'train_benchmark', '\n'.join(table) + '\n',
                 training_bars(results), title,
                 'seconds per iteration (median; whiskers: min-max)')
    return table
