"""Run a fused RepVGG's 3x3 convs through Winograd (NNPACK) where it wins.

A fused RepVGG is nothing but 3x3 convs, and a Winograd algorithm computes a
3x3 conv with far fewer multiplications than the direct (im2col/oneDNN)
one. torch's CPU build already ships NNPACK, whose Winograd kernels are
reached through ``torch._nnpack_spatial_convolution`` and, with each
kernel transformed once and ReLU fused, through NNPACK's own C entry point
(:mod:`.nnpack`); this module reuses them and writes by hand only what
they lack:

* groups: NNPACK has none, so a grouped conv becomes one NNPACK call per
  group on channel slices (and one per image: NNPACK's batched entry point
  is the slower one), written into one output (:func:`nnpack_conv`);
* dilation: NNPACK has none either, so a dilated conv is computed on the
  ``d x d`` interleaved sub-grids of its input (space-to-batch), where it is
  an undilated 3x3 conv; the sub-images are tiled on one canvas so that
  NNPACK runs once (:func:`space_to_batch_conv`);
* the choice: which of oneDNN and NNPACK is faster depends on the channels,
  the spatial size and the CPU, so no fixed rule can pick it.
  :class:`WinogradConv2d` times every candidate the first time it sees an
  input shape and keeps the fastest for that shape;
* ReLU: a ReLU module right after a replaced conv moves into it
  (:func:`fuse_relus`), applied in NNPACK's output transform.

The op is a private torch API, so :func:`nnpack_problem` checks once per
process that it exists and gives the right answer; where it does not, every
:class:`WinogradConv2d` runs direct and one line is logged.
"""
import copy
import functools
import logging
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.logging import print_log
from torch import Tensor, nn

from ..models.backbones.repvgg import RepVGGBlock
from . import nnpack
from .space_to_batch import space_to_batch_conv

__all__ = [
    'ALGORITHMS', 'TOLERANCE', 'WinogradConv2d', 'choices_table',
    'ineligible_reason', 'nnpack_conv', 'nnpack_problem',
    'space_to_batch_conv', 'transform_bytes', 'winograd_convs'
]

#: The algorithms a :class:`WinogradConv2d` can run.
ALGORITHMS = ('direct', 'winograd', 'winograd_s2b')

#: Relative error bound of every Winograd candidate against direct.
TOLERANCE = nnpack.TOLERANCE

#: Grouped convs with more groups than this stay direct: one NNPACK call
#: per group cannot pay once the groups are narrow (depthwise convs).
MAX_GROUPS = 8

#: Time spent timing one candidate at one shape: calls are repeated until
#: ``_REPEATS`` timed calls (after one warm-up) or this budget is reached.
_BUDGET_S = 0.06
_REPEATS = 3

#: The fallbacks that have logged their one line ('nnpack', 'c_api').
_logged: Set[str] = set()


@functools.lru_cache(maxsize=None)
def nnpack_problem() -> Optional[str]:
    """Why NNPACK cannot run convs in this process, or None if it can.

    ``torch._nnpack_spatial_convolution`` is private: a torch build may lack
    it, lack NNPACK, or (on a CPU its kernels were not made for) give wrong
    results. It is therefore checked once per process (the result is
    cached; ``nnpack_problem.cache_clear()`` forgets it) on two small
    random convs against ``F.conv2d``, at batch 1 (the only entry point
    :func:`nnpack_conv` uses) with bias, odd sizes and two paddings.

    Returns:
        Optional[str]: None when the op exists, NNPACK is available and its
        results match; otherwise one sentence saying why not.
    """
    op = getattr(torch, '_nnpack_spatial_convolution', None)
    if op is None:
        return 'this torch build has no torch._nnpack_spatial_convolution'
    try:
        # Also initializes NNPACK: the op itself fails until this ran once.
        available = torch.backends.nnpack.is_available()
    except Exception as error:  # noqa: BLE001  (a private API may break)
        return (f'torch.backends.nnpack.is_available() raised '
                f'{type(error).__name__}: {error}')
    if not available:
        return 'torch.backends.nnpack.is_available() is False'
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 8, 3, 3, generator=gen)
    bias = torch.randn(6, generator=gen)
    for padding in ([1, 1], [0, 2]):
        x = torch.randn(1, 8, 11, 13, generator=gen)
        with torch.no_grad():
            try:
                out = op(x, weight, bias, padding)
            except Exception as error:  # noqa: BLE001
                return (f'torch._nnpack_spatial_convolution raised '
                        f'{type(error).__name__}: {error}')
            ref = F.conv2d(x, weight, bias, padding=tuple(padding))
        if not isinstance(out, Tensor) or out.shape != ref.shape:
            return ('torch._nnpack_spatial_convolution returned the wrong '
                    'shape')
        err = nnpack.norm_error(out, ref)
        if not err < TOLERANCE:
            return (f'torch._nnpack_spatial_convolution differs from '
                    f'F.conv2d by a relative error of {err:.2g} (bound '
                    f'{TOLERANCE:g}) at padding {padding}')
    return None


def _usable(key: str, what: str, problem: Optional[str],
            consequence: str) -> bool:
    """``problem`` is None; otherwise logs ``what`` is not usable, why and
    the consequence: one line per ``key`` and process."""
    if problem is None:
        return True
    if key not in _logged:
        _logged.add(key)
        print_log(
            f'{what} is not usable ({problem}): {consequence}',
            logger='current',
            level=logging.WARNING)
    return False


def _nnpack_usable() -> bool:
    """:func:`nnpack_problem` is None; logs one line, once, when not."""
    return _usable('nnpack', 'NNPACK', nnpack_problem(),
                   'Winograd convs run direct (F.conv2d)')


def _c_api_usable() -> bool:
    """:func:`.nnpack.c_api_problem` is None; logs one line, once, when
    not (Winograd then runs through torch's op: slower, still exact)."""
    return _usable(
        'c_api', "NNPACK's C entry point", nnpack.c_api_problem(),
        'Winograd convs call torch._nnpack_spatial_convolution, which '
        'transforms every kernel on every call')


def nnpack_conv(x: Tensor,
                weight: Tensor,
                bias: Optional[Tensor],
                padding: Sequence[int],
                groups: int = 1,
                relu: bool = False,
                transform: Optional[nnpack.KernelTransform] = None) -> Tensor:
    """A stride-1 undilated conv through NNPACK, one image and group a call.

    With a precomputed ``transform`` NNPACK's C entry point runs on it
    (:func:`.nnpack.winograd_conv`, ReLU fused). Without one, torch's op
    runs, which transforms the kernel on every call; there images are split
    as well as groups: for N > 1 torch's wrapper calls NNPACK's batched
    entry point, which uses another algorithm and is slower than N batch-1
    calls (NNPACK's Winograd inference path).

    Args:
        x (Tensor): ``(N, C, H, W)`` float32 CPU input; may be a strided
            view (NNPACK copies it into the layout it needs).
        weight (Tensor): ``(O, C / groups, kH, kW)``.
        bias (Tensor, optional): ``(O, )``.
        padding (Sequence[int]): Zero padding ``(pH, pW)``.
        groups (int): As ``F.conv2d``'s. NNPACK has no groups, so each group
            is its own call on a channel slice.
        relu (bool): Apply ReLU to the result.
        transform (KernelTransform, optional): ``weight``'s, with
            ``groups``; None uses torch's op.

    Returns:
        Tensor: ``F.conv2d(x, weight, bias, padding=padding, groups=groups)``
        (then ReLU if asked) up to rounding.
    """
    if transform is not None:
        return nnpack.winograd_conv(x, transform, bias, padding, relu)
    out = _torch_nnpack_conv(x, weight, bias, padding, groups)
    return out.relu_() if relu else out


def _torch_nnpack_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                       padding: Sequence[int], groups: int) -> Tensor:
    x, pad = nnpack.pad_beyond_limit(x, padding)
    # Looked up at call time: a missing or replaced op is then seen.
    op = torch._nnpack_spatial_convolution
    n = x.shape[0]
    if n == 1 and groups == 1:
        return op(x, weight, bias, pad)
    cin = x.shape[1] // groups
    cout = weight.shape[0] // groups
    out = None
    for g in range(groups):
        ci, co = slice(g * cin, (g + 1) * cin), slice(g * cout, (g + 1) * cout)
        weight_g = weight[co]
        bias_g = None if bias is None else bias[co]
        for i in range(n):
            y = op(x[i:i + 1, ci], weight_g, bias_g, pad)
            if out is None:
                out = y.new_empty((n, weight.shape[0]) + y.shape[2:])
            out[i:i + 1, co] = y
    return out


def _conv_problem(conv: nn.Module) -> Optional[str]:
    """Why a conv's hyper-parameters rule NNPACK out, or None."""
    if not isinstance(conv, nn.Conv2d):
        return 'not an nn.Conv2d'
    if tuple(conv.kernel_size) != (3, 3):
        return f'kernel {tuple(conv.kernel_size)} is not 3x3'
    if tuple(conv.stride) != (1, 1):
        return f'stride {tuple(conv.stride)} is not 1'
    if conv.padding_mode != 'zeros':
        return f'padding mode {conv.padding_mode!r} is not zeros'
    if isinstance(conv.padding, str):
        return f'padding {conv.padding!r} is not numeric'
    if conv.groups > MAX_GROUPS:
        return f'{conv.groups} groups (more than {MAX_GROUPS})'
    return None


def ineligible_reason(module: nn.Module) -> Optional[str]:
    """Why :func:`winograd_convs` leaves a module alone, or None.

    Only plain ``nn.Conv2d`` (not subclasses, whose forward may differ) 3x3
    convs of stride 1 with numeric zero padding and at most
    :data:`MAX_GROUPS` groups are replaced. Strided convs are not: NNPACK's
    Winograd kernels are stride 1 only, so they would always run direct.

    Args:
        module (nn.Module): Any module.

    Returns:
        Optional[str]: None if eligible, else a short reason.
    """
    if type(module) is not nn.Conv2d:
        return 'not a plain nn.Conv2d'
    return _conv_problem(module)


class WinogradConv2d(nn.Conv2d):
    """A 3x3 conv that runs the fastest of oneDNN and NNPACK per shape.

    Which algorithm wins depends on the channels, the spatial size and the
    CPU, so the first forward at each input shape runs every candidate a
    few times (one warm-up, then up to three timed calls or about 60 ms),
    checks its output against the direct one (a Winograd result outside
    :data:`TOLERANCE` is rejected, with one log line), keeps the fastest by
    median time in :attr:`choices` and returns its output. Later forwards
    at that shape run the kept choice without timing anything.

    It is an ``nn.Conv2d`` and shares the source conv's parameters, so code
    that inspects convs (``in_channels``, ``weight``, ``groups``...), state
    dicts and BN folding see the same conv.

    Candidates: ``'direct'`` (``F.conv2d``, oneDNN) always; ``'winograd'``
    (:func:`nnpack_conv`, groups split by hand) for undilated convs;
    ``'winograd_s2b'`` (:func:`space_to_batch_conv`) for dilated ones.
    Winograd runs on the kernel's transform, made at its first use and kept
    (:class:`.nnpack.KernelTransform`, 64/9 of the weight's memory; made
    again if the weight changes) where NNPACK's C entry point works, else
    through torch's op.

    With ``relu=True`` the module computes ``relu(conv(x))``: NNPACK
    applies it in its output transform, the direct path in place after the
    conv. :func:`winograd_convs` sets it where a ReLU module followed the
    conv (and removes that module).

    Inputs NNPACK cannot or should not take run direct, without timing:
    anything but a 4-D float32 CPU tensor, channels-last inputs (kept in
    their layout for oneDNN), inputs under CPU autocast, and forwards under
    tracing, scripting, ONNX export, ``torch.compile`` or fx tracing (so
    that exports record a plain conv). So does everything when
    :func:`nnpack_problem` finds NNPACK unusable. A forced algorithm
    (``algorithm='winograd'``) still falls back then, but is not timed or
    checked per shape.

    Args:
        conv (nn.Conv2d): The conv to run; its parameters are shared, not
            copied. Must be eligible (:func:`ineligible_reason`) apart from
            being a subclass: a subclass is taken as a plain conv.
        algorithm (str): ``'auto'`` (measure per shape) or one of this
            conv's candidates to force it, for tests and ablations.
        relu (bool): Apply ReLU to the output.
    """

    def __init__(self,
                 conv: nn.Conv2d,
                 algorithm: str = 'auto',
                 relu: bool = False) -> None:
        reason = _conv_problem(conv)
        if reason is not None:
            raise ValueError(f'WinogradConv2d cannot run this conv: {reason}')
        # nn.Conv2d.__init__ would allocate and initialize a new weight;
        # take the source conv's hyper-parameters and parameters instead.
        nn.Module.__init__(self)
        for name in ('in_channels', 'out_channels', 'kernel_size', 'stride',
                     'padding', 'dilation', 'transposed', 'output_padding',
                     'groups', 'padding_mode',
                     '_reversed_padding_repeated_twice'):
            setattr(self, name, getattr(conv, name))
        self.register_parameter('weight', conv.weight)
        self.register_parameter('bias', conv.bias)
        self.train(conv.training)
        #: Input shape -> dict(choice=..., ms={candidate: median ms}),
        #: plus ``rejected={candidate: reason}`` where one failed.
        self.choices: Dict[Tuple[int, ...], dict] = {}
        self.algorithm = algorithm
        self.relu = relu
        self._transform: Optional[nnpack.KernelTransform] = None

    def __getstate__(self):
        # Deep copies and pickles leave the kernel transform behind (it is
        # made again on first use; its buffer addresses would be stale).
        state = super().__getstate__()
        state['_transform'] = None
        return state

    def kernel_transform(self) -> Optional[nnpack.KernelTransform]:
        """The weight's Winograd transform (made now if missing or stale),
        or None where NNPACK's C entry point is not usable."""
        if not _c_api_usable():
            return None
        if (self._transform is None
                or not self._transform.matches(self.weight, self.groups)):
            self._transform = None  # free the old one before the new
            self._transform = nnpack.KernelTransform(self.weight, self.groups)
        return self._transform

    @property
    def candidates(self) -> Tuple[str, ...]:
        """The algorithms this conv can run."""
        if tuple(self.dilation) == (1, 1):
            return ('direct', 'winograd')
        return ('direct', 'winograd_s2b')

    @property
    def algorithm(self) -> str:
        """``'auto'`` or the forced algorithm; setting it forgets
        :attr:`choices`."""
        return self._algorithm

    @algorithm.setter
    def algorithm(self, value: str) -> None:
        if value != 'auto' and value not in self.candidates:
            raise ValueError(
                f'algorithm must be auto or one of {self.candidates} for '
                f'this conv (dilation {tuple(self.dilation)}), not {value!r}')
        self._algorithm = value
        self.choices = {}

    def extra_repr(self) -> str:
        relu = ', relu=True' if self.relu else ''
        return f'{super().extra_repr()}, algorithm={self.algorithm}{relu}'

    def _run(self, algorithm: str, x: Tensor) -> Tensor:
        if algorithm in ('winograd', 'winograd_s2b'):
            conv = functools.partial(
                nnpack_conv, relu=self.relu, transform=self.kernel_transform())
            if algorithm == 'winograd':
                return conv(x, self.weight, self.bias, self.padding,
                            self.groups)
            # ReLU commutes with the sub-grid rearrangement.
            return space_to_batch_conv(
                x,
                self.weight,
                self.bias,
                self.padding,
                self.dilation,
                self.groups,
                conv=conv)
        out = self._conv_forward(x, self.weight, self.bias)
        return F.relu(out, inplace=True) if self.relu else out

    def _direct_only(self, x: Tensor) -> bool:
        """Whether this input must run direct (see the class docstring)."""
        if isinstance(x, torch.fx.Proxy):
            return True
        # The legacy ONNX exporter traces; the dynamo one compiles.
        if (torch.jit.is_scripting() or torch.jit.is_tracing()
                or torch.compiler.is_compiling()):
            return True
        if (x.dim() != 4 or x.numel() == 0 or x.device.type != 'cpu'
                or x.dtype != torch.float32 or self.weight.device.type != 'cpu'
                or self.weight.dtype != torch.float32
                or torch.is_autocast_enabled('cpu')):
            return True
        if (not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return True
        return not _nnpack_usable()

    def forward(self, x: Tensor) -> Tensor:
        if self._direct_only(x):
            return self._run('direct', x)
        key = tuple(x.shape)
        entry = self.choices.get(key)
        if entry is not None:
            return self._run(entry['choice'], x)
        if self.algorithm != 'auto':
            self.choices[key] = dict(choice=self.algorithm, ms={})
            return self._run(self.algorithm, x)
        entry, out = self._measure(x)
        self.choices[key] = entry
        return out

    def _measure(self, x: Tensor) -> Tuple[dict, Tensor]:
        """Time and check every candidate at ``x``'s shape.

        Returns:
            tuple[dict, Tensor]: The :attr:`choices` entry and the output
            of the chosen candidate.
        """
        ms: Dict[str, float] = {}
        rejected: Dict[str, str] = {}
        outs: Dict[str, Tensor] = {}
        for name in self.candidates:
            try:
                if name != 'direct':
                    # Made once for all shapes: not part of a call's time.
                    self.kernel_transform()
                ms[name], outs[name] = _time_calls(
                    functools.partial(self._run, name), x)
            except Exception as error:  # noqa: BLE001
                if name == 'direct':
                    raise
                rejected[name] = f'{type(error).__name__}: {error}'
                continue
            if name != 'direct':
                err = nnpack.norm_error(outs[name], outs['direct'])
                if not err < TOLERANCE:
                    rejected[name] = f'relative error {err:.2g}'
                    del ms[name], outs[name]
        for name, reason in rejected.items():
            print_log(
                f'WinogradConv2d: {name} rejected at input shape '
                f'{tuple(x.shape)} ({reason}); running direct',
                logger='current',
                level=logging.WARNING)
        choice = min(outs, key=lambda name: ms[name])
        entry = dict(choice=choice, ms=ms)
        if rejected:
            entry['rejected'] = rejected
        return entry, outs[choice]


def _time_calls(fn: Callable[[Tensor], Tensor],
                x: Tensor) -> Tuple[float, Tensor]:
    """Median milliseconds of ``fn(x)`` and its last output.

    One warm-up call (oneDNN creates its primitive and NNPACK its
    workspace then), then up to ``_REPEATS`` timed calls while within
    ``_BUDGET_S``; a layer slower than the budget is timed by its single
    (warm-up) call, so measuring costs about one call per candidate there.
    """
    times: List[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        out = fn(x)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if len(times) > _REPEATS or t1 - start >= _BUDGET_S:
            break
    timed = times[1:] if len(times) > 1 else times
    return statistics.median(timed) * 1000, out


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition('.')
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _conv_then_relu(module: nn.Module) -> Optional[Tuple[str, str]]:
    """``(conv attribute, ReLU attribute)`` of a module that computes
    exactly ``relu(conv(x))`` with a :class:`WinogradConv2d`, or None.

    Two such modules are known: a fused :class:`RepVGGBlock` and an mmcv
    ``ConvModule`` ordered conv -> norm -> act whose norm is gone or folded
    (``nn.Identity`` after ``fuse_conv_bn``). A ReLU called inside some
    other ``forward`` (ResNet's blocks) cannot be seen and stays separate.
    """
    if type(module) is RepVGGBlock and module.deploy:
        names = ('branch_reparam', 'act')
    elif (isinstance(module, ConvModule) and module.with_activation
          and tuple(module.order) == ('conv', 'norm', 'act')
          and (not module.with_norm or type(module.norm) is nn.Identity)):
        names = ('conv', 'activate')
    else:
        return None
    conv, act = (getattr(module, name, None) for name in names)
    if type(act) is not nn.ReLU or not isinstance(conv, WinogradConv2d):
        return None
    return names


def fuse_relus(model: nn.Module) -> List[str]:
    """Move every ReLU that directly follows a :class:`WinogradConv2d` into
    it (NNPACK applies it in its output transform instead of another pass
    over the output), in place.

    Returns:
        list[str]: Names of the modules whose ReLU moved.
    """
    fused = []
    for name, module in model.named_modules():
        names = _conv_then_relu(module)
        if names is None:
            continue
        conv_name, act_name = names
        getattr(module, conv_name).relu = True
        setattr(module, act_name, nn.Identity())
        fused.append(name)
    return fused


def winograd_convs(model: nn.Module,
                   inplace: bool = False,
                   algorithm: str = 'auto',
                   relu: bool = True) -> Tuple[nn.Module, List[str]]:
    """Replace every eligible 3x3 conv by a :class:`WinogradConv2d`.

    Meant for a fused (deploy-form) model in eval mode, in float32 on the
    CPU; other inputs still work but run direct. Eligibility is
    :func:`ineligible_reason`'s; strided and non-3x3 convs are left as they
    are. A conv registered under several names is replaced by one module
    everywhere. ReLUs that follow a replaced conv move into it
    (:func:`fuse_relus`) unless ``relu=False``.

    Args:
        model (nn.Module): The model (or a single conv).
        inplace (bool): Modify ``model`` itself; otherwise a deep copy is
            modified and ``model`` is left untouched.
        algorithm (str): Passed to every :class:`WinogradConv2d`:
            ``'auto'``, or ``'direct'`` / ``'winograd'`` to force one.
            ``'winograd'`` forces ``'winograd_s2b'`` on dilated convs.
        relu (bool): Fuse the ReLUs that follow the replaced convs.

    Returns:
        tuple[nn.Module, list[str]]: The model with Winograd convs and the
        names of the replaced convs (``''`` if ``model`` itself was one).
    """
    if algorithm not in ('auto', 'direct', 'winograd'):
        raise ValueError(f"algorithm must be 'auto', 'direct' or "
                         f"'winograd', not {algorithm!r}")
    if not inplace:
        model = copy.deepcopy(model)
    _nnpack_usable()  # the one fallback line, if any, at conversion time

    def make(conv: nn.Conv2d) -> WinogradConv2d:
        algo = algorithm
        if algo == 'winograd' and tuple(conv.dilation) != (1, 1):
            algo = 'winograd_s2b'
        return WinogradConv2d(conv, algo)

    if ineligible_reason(model) is None:
        return make(model), ['']
    found = [(name, module)
             for name, module in model.named_modules(remove_duplicate=False)
             if name and ineligible_reason(module) is None]
    replaced: Dict[int, WinogradConv2d] = {}
    for name, module in found:
        if id(module) not in replaced:
            replaced[id(module)] = make(module)
        _set_submodule(model, name, replaced[id(module)])
    if relu:
        fuse_relus(model)
    return model, [name for name, _ in found]


def transform_bytes(model: nn.Module) -> int:
    """Bytes held by the kernel transforms of ``model``'s
    :class:`WinogradConv2d` modules (made at their first Winograd call;
    weights the deployed model keeps besides its parameters)."""
    return sum(module._transform.nbytes for module in model.modules()
               if isinstance(module, WinogradConv2d)
               and module._transform is not None)


def choices_table(model: nn.Module) -> List[dict]:
    """The per-layer choices of a model's :class:`WinogradConv2d` modules.

    For the benchmark's "per-layer choices": one row per conv and input
    shape it has seen (a conv that has not run yet gets one row with shape
    and choice None).

    Args:
        model (nn.Module): A model after :func:`winograd_convs` and at least
            one forward.

    Returns:
        list[dict]: Rows with ``name``, ``shape`` (input shape),
        ``in_channels``, ``out_channels``, ``dilation``, ``groups``,
        ``choice``, ``direct_ms``, ``winograd_ms`` (NNPACK's time: plain or
        space-to-batch, whichever is this conv's candidate) and
        ``rejected`` (candidates that failed, with why). Times are None
        where not measured (forced algorithms, or fallback to direct).
    """
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, WinogradConv2d):
            continue
        common = dict(
            name=name,
            in_channels=module.in_channels,
            out_channels=module.out_channels,
            dilation=tuple(module.dilation),
            groups=module.groups)
        if not module.choices:
            rows.append(
                dict(
                    common,
                    shape=None,
                    choice=None,
                    direct_ms=None,
                    winograd_ms=None,
                    rejected={}))
        for shape, entry in module.choices.items():
            ms = entry['ms']
            rows.append(
                dict(
                    common,
                    shape=shape,
                    choice=entry['choice'],
                    direct_ms=ms.get('direct'),
                    winograd_ms=ms.get('winograd', ms.get('winograd_s2b')),
                    rejected=dict(entry.get('rejected', {}))))
    return rows
