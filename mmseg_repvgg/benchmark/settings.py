"""What a benchmark run measures: its settings and its models. Forms are
specs of :func:`~mmseg_repvgg.deploy.forms.parse_form`, the steps towards
a deploy form (unfused, backbone_fused, fused_cl) too."""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch

from ..deploy.forms import parse_form
from ..errors import ConfigError

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
    """How to measure (checked as made: ConfigError).

    Args:
        shape (tuple): Input H, W.
        batch (int): Batch size.
        warmup (int): Untimed runs first; the first one measures memory.
        runs (int): Timed runs; the median is reported.
        device (str): ``'cpu'``, ``'cuda'`` or ``'auto'``.
        threads (int, optional): torch and onnxruntime threads.
        forms (Sequence[str]): Forms of RepVGG models.
        baseline_forms (Sequence[str]): Forms of the other models.
        profile_forms (Sequence[str]): Forms whose backbone is profiled.
        matmul_size (int): N of the matmul ceiling.
        conv_shapes (Sequence[tuple]): (C, H, W) of the conv ceiling.
        calibration_shape (tuple): (N, H, W) of random weights' BN batch.
        seed (int): Weights and inputs.
        workdir (str, optional): For the temporary ONNX files.
        allow_emulated (bool): Also measure emulated (slow) precisions.
        pretrained_backbone (bool): RepVGG models without a checkpoint
            start from their config's pretrained backbone, head random.
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
    pretrained_backbone: bool = False

    def __post_init__(self):
        self.device = resolve_device(self.device)
        self.forms = canonical_forms(self.forms)
        self.baseline_forms = canonical_forms(self.baseline_forms)
        self.profile_forms = canonical_forms(self.profile_forms)
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
    """A model to measure.

    Args:
        config (str): Config file, or ``mmseg::path`` in mmseg's configs.
        checkpoint (str, optional): None measures random weights.
        name (str, optional): Defaults to the config's file name.
        cfg_options (dict): Overrides merged into the config.
        forms (Sequence[str], optional): Its forms instead of the settings'.
    """

    config: str
    checkpoint: Optional[str] = None
    name: Optional[str] = None
    cfg_options: Dict = field(default_factory=dict)
    forms: Optional[Sequence[str]] = None

    def __post_init__(self):
        if not self.name:
            self.name = osp.splitext(osp.basename(self.config))[0]
        if self.forms is not None:
            self.forms = canonical_forms(self.forms)


def canonical_forms(specs: Sequence[str]) -> Tuple[str, ...]:
    """Each spec's canonical name (ConfigError for one that is no form)."""
    return tuple(parse_form(spec).name for spec in specs)


def resolve_device(device: str) -> str:
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return device


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
