"""Measure every form of every model in one process and one run."""
import copy
import functools
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import build_segmentor, load_segmentor
from ..compare import agreeing_labels, relative_error
from ..config import load_config
from ..deploy.api import deploy_model
from ..deploy.forms import Form, FormUnavailable, parse_form
from ..deploy.kernels import int8_layer_table
from ..deploy.steps import structure
from ..deploy.timing import summarize, synchronizer, time_calls
from ..errors import ConfigError
from ..models.backbones import RepVGG
from ..models.fuse import random_inputs, segmentor_logits
from .analysis import analyze
from .ceilings import machine_info, measure_ceilings
from .measure import (ModuleTimer, PeakMemory, conv_profile, count_flops,
                      tensor_bytes)
from .settings import ModelSpec, Settings
from .winograd_report import choices_table, transform_bytes


@torch.no_grad()
def calibrate_norms(model: nn.Module,
                    inputs: Tensor,
                    keep: Optional[nn.Module] = None) -> None:
    """Give a random-weight model's BatchNorms (but those of ``keep``) the
    statistics of a batch: with PyTorch's default init RepVGG's summed
    branches grow block by block (logits ~1e5, fp16 overflows), not a
    trained network's scale."""
    kept = set(keep.modules()) if keep is not None else set()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    norms = [m for m in norms if m not in kept]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative: exactly this batch's statistics
    model.train()
    if keep is not None:
        keep.eval()  # its statistics stay the loaded ones
    segmentor_logits(model, inputs)
    model.eval()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def _pretrained_backbone(model: nn.Module, settings: Settings) -> bool:
    return settings.pretrained_backbone and isinstance(model.backbone, RepVGG)


def load_model(spec: ModelSpec, settings: Settings) -> nn.Module:
    """Build ``spec``'s model on the CPU in eval mode."""
    cfg = load_config(spec.config, spec.cfg_options)
    if spec.checkpoint:
        model, _ = load_segmentor(cfg, spec.checkpoint)
        return model
    torch.manual_seed(settings.seed)
    model = build_segmentor(cfg)
    keep = None
    if _pretrained_backbone(model, settings):
        if not (model.backbone.init_cfg or {}).get('checkpoint'):
            raise ConfigError(
                f'{spec.name}: --pretrained-backbone, but the backbone has '
                'no init_cfg checkpoint; name one in the config '
                "(model.backbone.init_cfg.checkpoint='mmpretrain://repvgg-"
                "B1g2' or a file), or give CONFIG=CHECKPOINT")
        model.backbone.init_weights()  # a missing file fails in one line
        keep = model.backbone
    n, height, width = settings.calibration_shape
    calibrate_norms(model, random_inputs((n, 3, height, width), settings.seed),
                    keep)
    return model.eval()


class FlopTable:
    """FLOPs of a model in each form's structure, on weightless copies."""

    def __init__(self, model: nn.Module, shape: Sequence[int]):
        self.model = model
        self.shape = tuple(shape)
        self._cache: Dict[Tuple[str, bool], Tuple[int, int]] = {}

    def __call__(self, form: Form) -> Tuple[int, int]:
        """(whole model, backbone) FLOPs of ``form``'s structure."""
        key = (form.fuse, form.lowres_psp)
        if key not in self._cache:
            meta = structure(form, copy.deepcopy(self.model).to('meta'))
            x = torch.empty(self.shape, device='meta')
            self._cache[key] = (count_flops(lambda: segmentor_logits(meta, x)),
                                count_flops(lambda: meta.backbone(x)))
        return self._cache[key]


def _memory(deployed, probe: PeakMemory) -> Dict:
    mb = 1024.0**2
    run = None if probe.bytes is None else probe.bytes / mb
    segmentor, session = deployed.segmentor, deployed.session
    if segmentor is not None:  # Winograd forms keep transforms too
        weights = (tensor_bytes(segmentor) + transform_bytes(segmentor)) / mb
    else:
        weights = session.weights_bytes() / mb if session is not None else 0.0
    return dict(
        weights_mb=weights,
        run_mb=run,
        peak_mb=None if run is None else weights + run,
        method=probe.method)


def measure_form(form: Form, model: nn.Module, inputs: Tensor,
                 settings: Settings, flops: FlopTable,
                 ceilings: Dict) -> Tuple[Dict, Tensor]:
    """Time one form; returns its result and its logits (fp32, CPU)."""
    device, sync = settings.device, synchronizer(settings.device)
    start = time.perf_counter()
    # int8 activation ranges come from another random batch than the one
    # timed and compared, as a deployment calibrates on other images.
    calibration = [random_inputs(tuple(inputs.shape), settings.seed + 1)]
    deployed = deploy_model(
        model,
        form,
        calibration,
        device,
        allow_emulated=settings.allow_emulated,
        input_shape=tuple(inputs.shape),
        workdir=settings.workdir)
    x = inputs.to(device)
    run = functools.partial(deployed, x)
    # A first call chooses Winograd's algorithms, autotunes cuDNN and
    # compiles: preparation, not timed calls nor peak memory.
    cuda = str(device).startswith('cuda')
    if form.winograd or cuda:
        run()
        sync()
    prepare_s = time.perf_counter() - start
    with PeakMemory(device) as probe:
        logits = run().detach().float().cpu()
    time_calls(run, settings.warmup - 1, sync)
    timer = ModuleTimer(deployed.segmentor.backbone, sync,
                        cuda) if deployed.segmentor is not None else None
    times = time_calls(run, settings.runs, sync)
    if timer is not None:
        timer.remove()
    profile = None
    if form.name in settings.profile_forms and deployed.cast is not None:

        def run_backbone():
            with deployed.context():
                return deployed.segmentor.backbone(deployed.cast(x))

        profile = conv_profile(run_backbone, device)
    latency = summarize(times)
    total, backbone = flops(form)
    rate = total / (latency['median'] / 1000.0) / 1e9
    precision = form.dtype_name(device)
    result = dict(
        form=form.name,
        label=form.label(device),
        status='ok',
        precision=precision,
        prepare_s=prepare_s,
        latency_ms=latency,
        images_per_s=settings.batch * 1000.0 / latency['median'],
        backbone_ms=summarize(timer.times) if timer else None,
        gflop=total / 1e9,
        backbone_gflop=backbone / 1e9,
        gflops_per_s=rate,
        share_of_fp32_matmul=rate / ceilings['fp32']['matmul'],
        memory=_memory(deployed, probe),
        notes=deployed.notes)
    if form.winograd and deployed.segmentor is not None:
        # Which algorithm each 3x3 conv chose at this shape, and why.
        result['winograd_choices'] = choices_table(deployed.segmentor)
    if form.precision == 'int8' and deployed.segmentor is not None:
        # Which convs run in int8, which stayed fp32, and their errors.
        result['int8_layers'] = int8_layer_table(deployed.segmentor)
    if profile is not None:
        conv_rate = backbone / (profile['conv_ms'] / 1000.0) / 1e9
        profile.update(
            conv_gflops_per_s=conv_rate,
            ceiling=precision,
            share_of_ceiling=conv_rate / ceilings[precision]['ceiling'])
        result['backbone_profile'] = profile
    return result, logits


def _log_form(log, name: str, result: Dict) -> None:
    if result['status'] != 'ok':
        log(f'{name}: {result["form"]} {result["status"]}: '
            f'{result["note"]}')
        return
    lat = result['latency_ms']
    log(f'{name}: {result["label"]}: {lat["median"]:.1f} ms median '
        f'({lat["min"]:.1f}-{lat["max"]:.1f}), '
        f'{result["gflops_per_s"]:.1f} GFLOP/s')


def _weights(spec: ModelSpec, model: nn.Module, settings: Settings) -> str:
    if spec.checkpoint:
        return f'checkpoint {spec.checkpoint}'
    if _pretrained_backbone(model, settings):
        return f'backbone {model.backbone.init_cfg["checkpoint"]}, head random'
    return 'random'


def benchmark_model(spec: ModelSpec, settings: Settings, ceilings: Dict,
                    log: Callable[[str], None], done: list) -> Dict:
    """Measure each form of one model into its entry in ``done``, form by
    form, so a Ctrl-C keeps the finished ones."""
    model = load_model(spec, settings)
    candidate = isinstance(model.backbone, RepVGG)
    height, width = settings.shape
    inputs = random_inputs((settings.batch, 3, height, width), settings.seed)
    flops = FlopTable(model, inputs.shape)
    entry = dict(
        name=spec.name,
        config=spec.config,
        checkpoint=spec.checkpoint,
        weights=_weights(spec, model, settings),
        role='candidate' if candidate else 'baseline',
        backbone=type(model.backbone).__name__,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        forms=[])
    done.append(entry)
    reference = None
    default = settings.forms if candidate else settings.baseline_forms
    for name in spec.forms or default:
        form = parse_form(name)
        try:
            result, logits = measure_form(form, model, inputs, settings, flops,
                                          ceilings)
        except Exception as err:  # keep the run's other forms
            skipped = isinstance(err, FormUnavailable)
            failure = f'{type(err).__name__}: {err}'[:500]
            result = dict(
                form=name,
                label=form.label(settings.device),
                status='skipped' if skipped else 'failed',
                note=str(err) if skipped else failure)
        if result['status'] == 'ok':
            if reference is None and form.precision == 'fp32':
                reference = logits
            if reference is not None:
                same, total = agreeing_labels(reference, logits)
                result['accuracy'] = dict(
                    max_rel_diff=relative_error(reference, logits)[1],
                    label_agreement=same / max(total, 1))
        _log_form(log, spec.name, result)
        entry['forms'].append(result)
    return entry


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during the models: ``results`` holds the forms measured."""

    def __init__(self, results: Dict):
        super().__init__()
        self.results = results


def _stderr(message: str) -> None:
    print(f'[benchmark] {message}', file=sys.stderr, flush=True)


def run_benchmark(specs: Sequence[ModelSpec],
                  settings: Settings,
                  pairs: Optional[Sequence[Tuple[str, str]]] = None,
                  log: Callable[[str], None] = _stderr,
                  miou: Optional[Dict] = None) -> Dict:
    """Measure every form of every model, in this process.

    Args:
        specs (Sequence[ModelSpec]): Models (RepVGG ones and baselines).
        settings (Settings): How to measure.
        pairs (Sequence[tuple], optional): (candidate, baseline) names;
            None: :func:`~.analysis.default_pairs`.
        log (callable): Progress lines.
        miou (dict, optional): A :func:`~.miou.miou_check` result to report.

    Returns:
        dict: JSON-ready results (see ``docs/benchmark.md``).

    Raises:
        BenchmarkInterrupted: Ctrl-C after a form was measured; its
            ``results`` hold the finished forms.
    """
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f'model names must differ: {", ".join(names)}')
    unknown = [
        name for pair in pairs or () for name in pair if name not in names
    ]
    if unknown:
        raise ConfigError(f'--pair: unknown models {", ".join(unknown)}; '
                          f'the models are {", ".join(names)}')
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.device.startswith('cuda'):
        torch.backends.cudnn.benchmark = True  # fixed input size
    started = time.time()
    info = machine_info(settings.device)
    ceilings = measure_ceilings(settings.device, settings.matmul_size,
                                settings.conv_shapes)
    log(f'ceilings: {ceilings}')
    models = []
    try:
        with tempfile.TemporaryDirectory(dir=settings.workdir) as workdir:
            settings_used = replace(settings, workdir=workdir)
            for spec in specs:
                benchmark_model(spec, settings_used, ceilings, log, models)
    except KeyboardInterrupt:
        measured = [model for model in models if model['forms']]
        if not measured:
            raise
        names = {model['name'] for model in measured}
        pairs = pairs and [p for p in pairs if set(p) <= names]
        raise BenchmarkInterrupted(
            _results(settings, info, started, ceilings, measured, miou, pairs,
                     True)) from None
    return _results(settings, info, started, ceilings, models, miou, pairs,
                    False)


def _results(settings: Settings, info: Dict, started: float, ceilings: Dict,
             models: list, miou: Optional[Dict], pairs: Optional[Sequence],
             interrupted: bool) -> Dict:
    info.update(
        load_average_end=list(os.getloadavg()), wall_s=time.time() - started)
    settings_dict = asdict(settings)
    settings_dict.pop('workdir')
    results = dict(
        schema=1,
        tool='mmseg_repvgg.benchmark',
        settings=settings_dict,
        machine=info,
        ceilings=ceilings,
        models=models,
        miou_check=miou,
        interrupted=interrupted)
    results.update(analyze(results, pairs))
    return results
