"""Deploy forms, composed from parts, and the one parser of their specs: a
spec names the parts that differ from fused fp32 in eager PyTorch, joined by
``_`` or ``+`` in any order (``int8_lowres``, ``reduced+cl+lowres``)."""
import re
from dataclasses import dataclass, replace
from typing import Dict, Optional, Union

import torch

from ..errors import ConfigError, UserError
from .machine import machine

#: The value each word of a spec gives to a part of :class:`Form`.
WORDS = {
    'fused': ('fuse', 'full'),
    'backbone': ('fuse', 'backbone'),  # spelt backbone_fused
    'unfused': ('fuse', 'none'),
    'fp32': ('precision', 'fp32'),
    'reduced': ('precision', 'reduced'),
    'autocast': ('precision', 'autocast'),
    'int8': ('precision', 'int8'),
    # The other int8 recipes (kernels/int8_recipe.py RECIPES).
    **{
        recipe: ('int8_recipe', recipe)
        for recipe in ('plain', 'equalized', 'biascorrected', 'fallback')
    },
    'cl': ('channels_last', True),
    'winograd': ('winograd', True),
    'lowres': ('lowres_psp', True),
    'compiled': ('runtime', 'compile'),
    'onnxruntime': ('runtime', 'onnxruntime'),
    'openvino': ('runtime', 'openvino'),
    'graph': ('cuda_graph', True),
}
#: The forms ``--list-forms`` shows: what a deployment ships (any other
#: combination :func:`parse_form` accepts works too).
NAMED_FORMS = ('fused', 'reduced', 'reduced_cl', 'lowres', 'reduced_lowres',
               'reduced_cl_lowres', 'reduced_graph', 'reduced_cl_lowres_graph',
               'autocast', 'winograd', 'winograd_lowres', 'compiled', 'int8',
               'int8_lowres', 'onnxruntime', 'onnxruntime_int8',
               'onnxruntime_int8_lowres', 'openvino', 'openvino_int8')
#: The spec that lets :func:`~.api.deploy_model` measure and choose.
AUTO = 'auto'
DTYPE_NAMES = {torch.bfloat16: 'bf16', torch.float16: 'fp16'}
_EXTRAS = dict(onnxruntime='deploy', openvino='openvino')


class FormUnavailable(UserError):
    """The form cannot run here; the message says why and what would."""


@dataclass(frozen=True)
class Form:
    """One way to run a segmentor: its parts.

    Args:
        fuse (str): ``'full'``, ``'backbone'`` (RepVGG blocks) or ``'none'``.
        precision (str): ``'fp32'``, ``'reduced'`` (bf16 on CPU, fp16 on
            CUDA), ``'autocast'`` (to reduced) or ``'int8'`` (calibrated).
        channels_last (bool): Weights and input in channels_last.
        winograd (bool): 3x3 convs by direct or Winograd, chosen per layer.
        lowres_psp (bool): PSP bottleneck's pooled part at pool resolution.
        runtime (str): ``torch``, ``compile``, ``onnxruntime`` or ``openvino``.
        cuda_graph (bool): The eager forward replayed as a CUDA graph.
        int8_recipe (str): A key of :mod:`.kernels.int8_recipe`'s RECIPES.
    """

    fuse: str = 'full'
    precision: str = 'fp32'
    channels_last: bool = False
    winograd: bool = False
    lowres_psp: bool = False
    runtime: str = 'torch'
    cuda_graph: bool = False
    int8_recipe: str = 'default'

    @property
    def name(self) -> str:
        """The canonical spec: the parts that differ from the defaults."""
        words = [
            dict(none='unfused', backbone='backbone_fused').get(self.fuse)
        ]
        words.append(dict(compile='compiled').get(self.runtime, self.runtime))
        if self.precision != _default_precision(self.runtime):
            words.append(self.precision)
        if self.int8_recipe != 'default':
            words.append(self.int8_recipe)
        words += [
            word for word in ('cl', 'winograd', 'lowres', 'graph')
            if getattr(self, WORDS[word][0])
        ]
        words = [w for w in words if w and w != 'torch']
        # 'cl' alone reads as a layout, not a form.
        return '_'.join(['fused'] * (words[:1] in ([], ['cl'])) + words)

    def dtype_name(self, device: str = 'cpu') -> str:
        """``'fp32'``, ``'int8'``, or the reduced type on ``device``."""
        if self.precision in ('fp32', 'int8'):
            return self.precision
        return DTYPE_NAMES[machine().reduced_dtype(device)]

    def label(self, device: str = 'cpu') -> str:
        """Human-readable, e.g. ``'fused bf16 channels_last'``."""
        runtimes = dict(onnxruntime='onnxruntime', openvino='OpenVINO')
        fusions = dict(none='unfused', backbone='backbone-fused', full='fused')
        head = runtimes.get(self.runtime) or fusions[self.fuse]
        low = self.dtype_name(device)
        precision = (f'fp32 + {low} autocast'
                     if self.precision == 'autocast' else low)
        extras = [(self.channels_last, 'channels_last'),
                  (self.winograd, 'Winograd'),
                  (self.lowres_psp, '+ low-res PSP'),
                  (self.runtime == 'compile', 'torch.compile'),
                  (self.cuda_graph, 'CUDA graph'),
                  (self.int8_recipe
                   != 'default', f'({self.int8_recipe} int8 recipe)')]
        return ' '.join([head, precision] + [t for on, t in extras if on])


def _default_precision(runtime: str) -> str:
    # torch.compile forms are made for the reduced type (inductor's target).
    return 'reduced' if runtime == 'compile' else 'fp32'


def _conflict(form: Form) -> Optional[str]:
    """Why the parts cannot combine, naming what would; None if they can."""
    if form.runtime in ('onnxruntime', 'openvino'):
        if form.precision not in ('fp32', 'int8'):
            return f'{form.runtime} runs fp32 or int8 models'
        if form.fuse != 'full':
            return f'{form.runtime} runs the fully fused export (drop unfused)'
        if form.channels_last or form.winograd or form.cuda_graph:
            return (f'{form.runtime} picks its own layout and kernels: cl, '
                    'winograd and graph are PyTorch parts')
    if form.runtime == 'compile' and (form.precision in ('int8', 'autocast')
                                      or form.channels_last or form.winograd
                                      or form.cuda_graph):
        return ('torch.compile runs fp32 or reduced and picks its own layout '
                'and kernels (drop int8, autocast, cl, winograd, graph)')
    if form.winograd and form.precision != 'fp32':
        return 'the Winograd kernels are fp32 (drop the precision)'
    if form.precision == 'int8' and form.fuse != 'full':
        return 'int8 quantizes the fused convs (drop unfused/backbone)'
    if form.cuda_graph and (form.winograd or form.precision == 'int8'):
        return 'graph is a CUDA part, winograd and int8 CPU parts'
    if form.int8_recipe != 'default' and form.precision != 'int8':
        return f'{form.int8_recipe} is an int8 recipe (add int8)'
    return None


def parse_form(spec: Union[str, Form]) -> Form:
    """The form a spec names (a :class:`Form` is returned as it is).

    Raises:
        ConfigError: An unknown word, two values of a part, or parts that
            cannot combine; the message says which and what works.
    """
    if isinstance(spec, Form):
        return spec
    parts: Dict[str, object] = {}
    for word in re.split(r'[_+]', str(spec).strip().lower()):
        if word not in WORDS:
            raise ConfigError(
                f'unknown deploy form {spec!r}: {word!r} is not a part of a '
                f'form; the parts are {", ".join(WORDS)} (e.g. int8_lowres; '
                'tools/test.py --list-forms lists the named forms)')
        part, value = WORDS[word]
        if word == 'fused' and parts.get(part) == 'backbone':
            continue  # backbone_fused
        if parts.setdefault(part, value) != value:
            raise ConfigError(f'deploy form {spec!r} gives {part} two values '
                              f'({parts[part]}, {value}): keep one')
    parts.setdefault('precision',
                     _default_precision(parts.get('runtime', 'torch')))
    form = Form(**parts)
    problem = _conflict(form)
    if problem:
        raise ConfigError(f'deploy form {spec!r}: {problem}')
    return form


def _runtime_missing(form: Form) -> Optional[str]:
    modules = [form.runtime] if form.runtime in _EXTRAS else []
    if form.runtime == 'openvino' and form.precision == 'int8':
        modules.append('nncf')
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            return (f'{module} is not installed; pip install '
                    f"'mmseg-repvgg[{_EXTRAS[form.runtime]}]'")
    return None


def why_unavailable(form: Form,
                    device: str = 'cpu',
                    allow_emulated: bool = False) -> Optional[str]:
    """None if ``form`` runs on ``device`` here; else one sentence why.

    Args:
        form (Form): The form.
        device (str): ``'cpu'`` or a CUDA device.
        allow_emulated (bool): Accept a reduced precision only emulated.
    """
    cuda = str(device).startswith('cuda')
    if form.cuda_graph and not cuda:
        return 'CUDA graphs replay recorded CUDA kernels: graph needs CUDA'
    if cuda and form.runtime == 'openvino':
        return 'the OpenVINO forms run on the CPU'
    if cuda and form.winograd:
        return 'the Winograd kernels are CPU kernels (NNPACK)'
    precision = form.dtype_name(device)
    reason = machine().why_not(precision, device)
    if reason and not (allow_emulated and precision in ('bf16', 'fp16')):
        return reason
    if form.precision == 'int8' and form.runtime == 'torch':
        # The private kernel route's own check (its failure logged once).
        from .kernels.int8 import why_int8_unavailable
        return why_int8_unavailable()
    return _runtime_missing(form)


def _runs_instead(form: Form, device: str,
                  allow_emulated: bool) -> Optional[Form]:
    """The form with the fewest parts dropped that runs here, if any."""
    # One part at a time, then all of them.
    drop = [('cuda_graph', False), ('channels_last', False),
            ('precision', 'fp32'), ('runtime', 'torch')]
    for change in [dict([part]) for part in drop] + [dict(drop)]:
        other = replace(form, **change)
        if (other != form and _conflict(other) is None
                and why_unavailable(other, device, allow_emulated) is None):
            return other
    return None


def check_form(spec: Union[str, Form],
               device: str = 'cpu',
               allow_emulated: bool = False) -> Form:
    """:func:`parse_form`, then refuse a form that cannot run here.

    Raises:
        ConfigError: The spec is not a form (see :func:`parse_form`).
        FormUnavailable: It cannot run here: why, and what runs instead.
    """
    form = parse_form(spec)
    reason = why_unavailable(form, device, allow_emulated)
    if reason is None:
        return form
    instead = _runs_instead(form, device, allow_emulated)
    hints = [f'{instead.name} runs here'] if instead else []
    if 'emulate' in reason:
        hints.append('--allow-emulated runs it emulated, slowly')
    hints.append('tools/test.py --list-forms lists what runs here')
    raise FormUnavailable(f'{form.name} cannot run on {device} here: '
                          f'{reason}; {"; ".join(hints)}')


def available_forms(device: str = 'cpu',
                    allow_emulated: bool = False) -> Dict[str, Optional[str]]:
    """``{name: None if it runs here, else why not}`` of the named forms."""
    return {
        name: why_unavailable(parse_form(name), device, allow_emulated)
        for name in NAMED_FORMS
    }


def needs_calibration(spec: Union[str, Form]) -> bool:
    """Whether the form (or ``'auto'``, which may pick int8) calibrates."""
    return spec == AUTO or parse_form(spec).precision == 'int8'
