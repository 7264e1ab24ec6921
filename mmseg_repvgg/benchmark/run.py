"""Measure every form of every model in one process and one run."""
import os
import os.path as osp
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..config_io import load_config
from ..deploy import (build_segmentor, load_segmentor, random_inputs,
                      segmentor_logits)
from ..deploy.deployed import deploy_model
from ..deploy.forms import FORMS, Form, FormUnavailable, form_structure
from ..deploy.winograd import choices_table, transform_bytes
from ..errors import ConfigError
from ..models.backbones import RepVGG
from .analysis import analyze
from .machine import machine_info, measure_ceilings
from .measure import (ModuleTimer, PeakMemory, conv_profile, count_flops,
                      meta_copy, relative_difference, summarize, synchronizer,
                      tensor_bytes, time_calls)

#: Forms measured by default: RepVGG models (candidates) and baselines.
CANDIDATE_FORMS = ('unfused', 'backbone_fused', 'fused', 'fused_cl', 'reduced',
                   'reduced_cl', 'lowres', 'reduced_lowres', 'winograd',
                   'winograd_lowres', 'onnxruntime', 'int8', 'int8_lowres',
                   'onnxruntime_int8', 'onnxruntime_int8_lowres', 'openvino',
                   'openvino_int8')
BASELINE_FORMS = ('unfused', 'fused', 'reduced', 'reduced_lowres', 'winograd',
                  'winograd_lowres', 'int8', 'int8_lowres', 'openvino',
                  'openvino_int8')
#: mmseg's own PSPNet ResNet-50/101-D8 Cityscapes configs.
DEFAULT_BASELINES = (
    'mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'mmseg::pspnet/pspnet_r101-d8_4xb2-40k_cityscapes-512x1024.py')


@dataclass
class Settings:
    """How to measure.

    Args:
        shape (tuple): Input H, W. Defaults to (512, 1024).
        batch (int): Batch size. Defaults to 1.
        warmup (int): Untimed runs first (>= 1; the first one measures
            memory). Defaults to 1.
        runs (int): Timed runs; the median is reported. Defaults to 3.
        device (str): ``'cpu'``, ``'cuda'`` or ``'auto'``.
        threads (int, optional): torch and onnxruntime threads; None keeps
            torch's default.
        forms (Sequence[str]): Forms of RepVGG models.
        baseline_forms (Sequence[str]): Forms of the other models.
        profile_forms (Sequence[str]): Forms whose backbone is profiled
            once for its time inside convolutions.
        matmul_size (int): N of the matmul ceiling.
        conv_shapes (Sequence[tuple]): (C, H, W) of the 3x3 convs of the
            conv ceiling: the first stage PSPNet-RepVGG-B runs at OS8 on
            512x1024, and its 512-channel stage.
        calibration_shape (tuple): Random-weight models get BN statistics
            from one train-mode forward of this (N, H, W).
        seed (int): Weights and inputs.
        workdir (str, optional): For the temporary ONNX files.
        allow_emulated (bool): Also measure reduced float precisions that
            the machine only emulates (slow: minutes per form on an AVX2
            CPU); by default they are skipped, with the reason.
    """

    shape: Tuple[int, int] = (512, 1024)
    batch: int = 1
    warmup: int = 1
    runs: int = 3
    device: str = 'cpu'
    threads: Optional[int] = None
    forms: Sequence[str] = CANDIDATE_FORMS
    baseline_forms: Sequence[str] = BASELINE_FORMS
    profile_forms: Sequence[str] = ('fused', 'reduced', 'int8')
    matmul_size: int = 4096
    conv_shapes: Sequence[Tuple[int, int,
                                int]] = ((256, 128, 256), (512, 64, 128))
    calibration_shape: Tuple[int, int, int] = (2, 64, 128)
    seed: int = 0
    workdir: Optional[str] = None
    allow_emulated: bool = False

    def check(self) -> None:
        """Raise ConfigError for settings that cannot work."""
        asked = set(self.forms) | set(self.baseline_forms)
        unknown = sorted(asked - set(FORMS))
        if unknown:
            raise ConfigError(f'unknown forms {", ".join(unknown)}; choose '
                              f'from {", ".join(FORMS)}')
        if self.warmup < 1 or self.runs < 1:
            raise ConfigError('--warmup and --runs must be at least 1 (the '
                              'first warm-up run measures memory)')
        if min(self.shape) < 1 or self.batch < 1:
            raise ConfigError('--shape and --batch must be positive')
        if self.device.startswith('cuda') and not torch.cuda.is_available():
            raise ConfigError('--device cuda: torch sees no CUDA device; use '
                              '--device cpu')


@dataclass
class ModelSpec:
    """A model to measure: a config and, optionally, its checkpoint.

    Args:
        config (str): Config file, or ``mmseg::path`` in mmseg's configs.
        checkpoint (str, optional): None measures random weights (BN
            statistics calibrated, see :func:`calibrate_norms`).
        name (str, optional): Defaults to the config's file name.
        cfg_options (dict): Overrides merged into the config.
        forms (Sequence[str], optional): This model's forms instead of
            the settings' (e.g. fewer for a slow model).
    """

    config: str
    checkpoint: Optional[str] = None
    name: Optional[str] = None
    cfg_options: Dict = field(default_factory=dict)
    forms: Optional[Sequence[str]] = None

    def __post_init__(self):
        if not self.name:
            self.name = osp.splitext(osp.basename(self.config))[0]


@torch.no_grad()
def calibrate_norms(model: nn.Module, inputs: Tensor) -> None:
    """Give a random-weight model's BatchNorms the statistics of a batch.

    PyTorch's default init leaves RepVGG's summed branches growing block
    by block (logits ~1e5, fp16 overflows); with batch statistics the
    activations have a trained network's scale, so reduced precision and
    label agreement are judged on realistic values.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative: exactly this batch's statistics
    model.train()
    segmentor_logits(model, inputs)
    model.eval()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def load_model(spec: ModelSpec, settings: Settings) -> nn.Module:
    """Build ``spec``'s model on the CPU in eval mode."""
    cfg = load_config(spec.config, spec.cfg_options)
    if spec.checkpoint:
        model, _ = load_segmentor(cfg, spec.checkpoint)
        return model
    torch.manual_seed(settings.seed)
    model = build_segmentor(cfg)
    n, height, width = settings.calibration_shape
    calibrate_norms(model, random_inputs((n, 3, height, width), settings.seed))
    return model.eval()


class FlopTable:
    """FLOPs of a model in each form's structure, counted on weightless
    copies."""

    def __init__(self, model: nn.Module, shape: Sequence[int]):
        self.model = model
        self.shape = tuple(shape)
        self._cache: Dict[Tuple[str, bool], Tuple[int, int]] = {}

    def __call__(self, form: Form) -> Tuple[int, int]:
        """(whole model, backbone) FLOPs of ``form``'s structure: its
        fusion level and, if it has one, the low-res PSP bottleneck."""
        key = (form.fuse, form.lowres_psp)
        if key not in self._cache:
            meta = form_structure(form, meta_copy(self.model))
            x = torch.empty(self.shape, device='meta')
            self._cache[key] = (count_flops(lambda: segmentor_logits(meta, x)),
                                count_flops(lambda: meta.backbone(x)))
        return self._cache[key]


def _weights_bytes(deployed) -> int:
    if deployed.segmentor is not None:
        # Winograd forms also keep each kernel's transform.
        return (tensor_bytes(deployed.segmentor) +
                transform_bytes(deployed.segmentor))
    session = deployed.session
    return session.weights_bytes() if session is not None else 0


def _memory(deployed, probe: PeakMemory) -> Dict:
    mb = 1024.0**2
    run = None if probe.bytes is None else probe.bytes / mb
    weights = _weights_bytes(deployed) / mb
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
        form.name,
        calibration,
        device,
        allow_emulated=settings.allow_emulated,
        input_shape=tuple(inputs.shape),
        workdir=settings.workdir)
    x = inputs.to(device)

    def run():
        return deployed(x)

    # Winograd forms choose each layer's algorithm on their first call at a
    # shape: part of preparing the form, not of its timed calls.
    if form.winograd:
        run()
    prepare_s = time.perf_counter() - start
    with PeakMemory(device) as probe:
        logits = run().detach().float().cpu()
    time_calls(run, settings.warmup - 1, sync)
    timer = ModuleTimer(deployed.segmentor.backbone,
                        sync) if deployed.segmentor is not None else None
    times = time_calls(run, settings.runs, sync)
    if timer is not None:
        timer.remove()
    profile = None
    if form.name in settings.profile_forms and deployed.run_backbone:
        profile = conv_profile(lambda: deployed.run_backbone(x), device)
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


def benchmark_model(spec: ModelSpec, settings: Settings, ceilings: Dict,
                    log: Callable[[str], None]) -> Dict:
    """Measure each form of one model; see :func:`run_benchmark`."""
    model = load_model(spec, settings)
    candidate = isinstance(model.backbone, RepVGG)
    height, width = settings.shape
    inputs = random_inputs((settings.batch, 3, height, width), settings.seed)
    flops = FlopTable(model, inputs.shape)
    entry = dict(
        name=spec.name,
        config=spec.config,
        checkpoint=spec.checkpoint,
        role='candidate' if candidate else 'baseline',
        backbone=type(model.backbone).__name__,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        forms=[])
    reference = None
    default = settings.forms if candidate else settings.baseline_forms
    for name in spec.forms or default:
        form = FORMS[name]
        try:
            result, logits = measure_form(form, model, inputs, settings, flops,
                                          ceilings)
        except FormUnavailable as err:
            result = dict(
                form=name,
                label=form.label(settings.device),
                status='skipped',
                note=str(err))
        except Exception as err:  # keep the run's other forms
            result = dict(
                form=name,
                label=form.label(settings.device),
                status='failed',
                note=f'{type(err).__name__}: '
                f'{err}'[:500])
        if result['status'] == 'ok':
            if reference is None and form.precision == 'fp32':
                reference = logits
            if reference is not None:
                result['accuracy'] = relative_difference(reference, logits)
        _log_form(log, spec.name, result)
        entry['forms'].append(result)
    return entry


def resolve_device(device: str) -> str:
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return device


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
        pairs (Sequence[tuple], optional): (candidate, baseline) names to
            compare; by default the paper's pairs (see
            :func:`~mmseg_repvgg.benchmark.analysis.default_pairs`).
        log (callable): Progress lines. Defaults to stderr.
        miou (dict, optional): A :func:`~.miou.miou_check` result to
            report (and check) beside the speeds.

    Returns:
        dict: JSON-ready results (see ``docs/benchmark.md``).
    """
    settings.device = resolve_device(settings.device)
    settings.check()
    names = [spec.name for spec in specs]
    unknown = sorted({f
                      for spec in specs
                      for f in spec.forms or ()} - set(FORMS))
    if unknown:
        raise ConfigError(f'unknown forms {", ".join(unknown)}; choose '
                          f'from {", ".join(FORMS)}')
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
    with tempfile.TemporaryDirectory(dir=settings.workdir) as workdir:
        settings_used = Settings(**{**asdict(settings), 'workdir': workdir})
        models = [
            benchmark_model(spec, settings_used, ceilings, log)
            for spec in specs
        ]
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
        miou_check=miou)
    results.update(analyze(results, pairs))
    return results


def split_model_arg(text: str) -> ModelSpec:
    """``CONFIG[=CHECKPOINT][@FORM,FORM...]`` from the command line."""
    rest, at, forms = text.partition('@')
    config, equals, checkpoint = rest.partition('=')
    if not config or (equals and not checkpoint) or (at and not forms):
        raise ConfigError(f'{text!r}: expected CONFIG, CONFIG=CHECKPOINT, '
                          'optionally followed by @FORM,FORM...')
    return ModelSpec(
        config,
        checkpoint or None,
        forms=[f for f in forms.split(',') if f] or None)
