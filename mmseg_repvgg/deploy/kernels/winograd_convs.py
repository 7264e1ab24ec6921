"""Put :class:`~.winograd.WinogradConv2d` into a model, and read back, save
and give back what each one chose.

* :func:`winograd_convs` replaces every eligible 3x3 conv and moves the
  ReLUs that follow them into the convs (:func:`fuse_relus`);
* :func:`tuned_choices` returns every layer's choice per input shape as a
  plain JSON-able dict, and :func:`apply_choices` (or ``winograd_convs(...,
  choices=...)``) gives such a dict back, so a deploy artifact can carry
  its kernels and run them without timing anything;
* :func:`choices_table` and :func:`transform_bytes` feed the benchmark's
  report.
"""
import copy
from typing import Dict, List, Mapping, Optional, Tuple

from torch import nn

from .relu import relu_followers
from .tuning import parse_shape, shape_text
from .winograd import WinogradConv2d, _nnpack_usable, ineligible_reason

#: ``{layer name: {input shape as '1x8x13x19': algorithm}}``.
Choices = Dict[str, Dict[str, str]]


def fuse_relus(model: nn.Module) -> List[str]:
    """Move every ReLU that directly follows a :class:`WinogradConv2d` into
    it (NNPACK applies it in its output transform instead of another pass
    over the output), in place. Where that is exact is
    :func:`.relu.relu_followers`'s decision.

    Returns:
        list[str]: Names of the modules whose ReLU moved.
    """
    fused = []
    for conv_name, (owner, act) in relu_followers(model).items():
        conv = model.get_submodule(conv_name)
        if not isinstance(conv, WinogradConv2d):
            continue
        conv.relu = True
        setattr(owner, act, nn.Identity())
        fused.append(conv_name.rpartition('.')[0])
    return fused


def winograd_convs(model: nn.Module,
                   inplace: bool = False,
                   algorithm: str = 'auto',
                   relu: bool = True,
                   choices: Optional[Mapping[str, Mapping[str, str]]] = None,
                   cache: bool = True) -> Tuple[nn.Module, List[str]]:
    """Replace every eligible 3x3 conv by a :class:`WinogradConv2d`.

    Meant for a fused (deploy-form) model in eval mode, in float32 on the
    CPU; other inputs still work but run direct. Eligibility is
    :func:`~.winograd.ineligible_reason`'s; strided and non-3x3 convs are
    left as they are. A conv registered under several names is replaced by
    one module everywhere. ReLUs that follow a replaced conv move into it
    (:func:`fuse_relus`) unless ``relu=False``.

    Args:
        model (nn.Module): The model (or a single conv).
        inplace (bool): Modify ``model`` itself; otherwise a deep copy is
            modified and ``model`` is left untouched.
        algorithm (str): Passed to every :class:`WinogradConv2d`:
            ``'auto'``, or ``'direct'`` / ``'winograd'`` to force one.
            ``'winograd'`` forces ``'winograd_s2b'`` on dilated convs.
        relu (bool): Fuse the ReLUs that follow the replaced convs.
        choices (Mapping, optional): Saved choices
            (:func:`tuned_choices`), used without timing; layers and
            shapes it lacks are chosen as usual.
        cache (bool): Read and write choices in this machine's on-disk
            cache (:mod:`.tuning`).

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
        return WinogradConv2d(conv, algo, cache=cache)

    if ineligible_reason(model) is None:
        model, names = make(model), ['']
    else:
        found = [
            (name, module)
            for name, module in model.named_modules(remove_duplicate=False)
            if name and ineligible_reason(module) is None
        ]
        replaced: Dict[int, WinogradConv2d] = {}
        for name, module in found:
            if id(module) not in replaced:
                replaced[id(module)] = make(module)
            model.set_submodule(name, replaced[id(module)])
        if relu:
            fuse_relus(model)
        names = [name for name, _ in found]
    if choices:
        apply_choices(model, choices)
    return model, names


def tuned_choices(model: nn.Module) -> Choices:
    """Every :class:`WinogradConv2d`'s choice per input shape, JSON-able.

    Args:
        model (nn.Module): A model after :func:`winograd_convs` (and
            forwards at the shapes to save).

    Returns:
        dict: ``{layer name: {'1x8x13x19': algorithm}}`` for the layers
        with a choice (made here, or given and not yet run); a shared conv
        under its first name. :func:`apply_choices` takes it back.
    """
    saved: Choices = {}
    for name, module in model.named_modules():
        if not isinstance(module, WinogradConv2d):
            continue
        layer = {shape_text(s): algo for s, algo in module.presets.items()}
        layer.update((shape_text(s), entry['choice'])
                     for s, entry in module.choices.items())
        if layer:
            saved[name] = layer
    return saved


def apply_choices(model: nn.Module,
                  choices: Mapping[str, Mapping[str, str]]) -> int:
    """Give ``model``'s Winograd convs saved choices (:func:`tuned_choices`),
    in place: each runs its algorithm at that shape without timing (checked
    once against direct at its first use).

    Args:
        model (nn.Module): A model after :func:`winograd_convs`.
        choices (Mapping): ``{layer name: {'1x8x13x19': algorithm}}``.

    Returns:
        int: How many (layer, shape) choices were given.

    Raises:
        ValueError: A name is not a :class:`WinogradConv2d` of ``model``,
            or an algorithm is not one of its candidates.
    """
    count = 0
    for name, per_shape in choices.items():
        try:
            module = model.get_submodule(name) if name else model
        except AttributeError:
            module = None
        if not isinstance(module, WinogradConv2d):
            raise ValueError(f'saved Winograd choices name {name!r}, which '
                             'is not a WinogradConv2d of this model')
        for shape, algorithm in per_shape.items():
            module.preset(parse_shape(shape), algorithm)
            count += 1
    return count


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
        where not measured (forced or saved algorithms, or fallback to
        direct); a choice from the on-disk cache has the times measured
        when it was cached.
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
