"""From measured forms to answers: fusion and its Amdahl ceiling, the fast
deploy path, RepVGG against its ResNet baseline. No targets: what the
numbers should reach is docs/benchmark.md's business."""
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ..deploy.forms import NAMED_FORMS, parse_form

#: mIoU points a fast path may lose against fp32 fused in the mIoU check.
MIOU_BOUND = 0.5
#: The paper's pairs (B1g2 vs ResNet-50, B2 vs ResNet-101), matched on
#: tokens of the model names.
PAPER_PAIRS = (('b1g2', 'r50'), ('b2', 'r101'))


def _ok_forms(model: Dict) -> Dict[str, Dict]:
    return {f['form']: f for f in model['forms'] if f['status'] == 'ok'}


def _median(model: Dict, form: str) -> Optional[float]:
    result = _ok_forms(model).get(form)
    return result['latency_ms']['median'] if result else None


def _ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    return num / den if num and den else None


def fast_path(model: Dict, rejected: Sequence[str] = ()) -> Optional[Dict]:
    """The fastest deploy form (fully fused, not a step on the way to one)
    measured, less the ``rejected`` ones."""
    forms = _ok_forms(model)
    ranked = sorted(
        (form for name, form in forms.items()
         if parse_form(name).fuse == 'full' and name not in rejected),
        key=lambda f: f['latency_ms']['median'])
    if not ranked:
        return None
    best = ranked[0]
    return dict(
        form=best['form'],
        label=best['label'],
        median_ms=best['latency_ms']['median'])


def fusion_summary(model: Dict) -> Optional[Dict]:
    """Fusion's end-to-end speed-up and the ceiling Amdahl's law sets.

    Fusing the backbone cannot speed up the rest (the head): with the
    backbone's share ``b`` of the unfused time, no backbone change gives
    more than ``1 / (1 - b)``; with the backbone's own fusion speed-up
    ``s`` measured in the same run, Amdahl predicts ``1 / (1 - b + b/s)``.
    """
    forms = _ok_forms(model)
    unfused = forms.get('unfused')
    if not unfused or not unfused.get('backbone_ms'):
        return None
    total = unfused['latency_ms']['median']
    backbone = unfused['backbone_ms']['median']
    rest = total - backbone
    out = dict(
        unfused_ms=total,
        backbone_ms=backbone,
        head_and_rest_ms=rest,
        backbone_share=backbone / total,
        amdahl_ceiling=total / rest if rest > 0 else None)
    for name in ('backbone_fused', 'fused'):
        if name in forms:
            median = forms[name]['latency_ms']['median']
            out[f'{name}_speedup'] = total / median
    fused_backbone = (forms.get('backbone_fused') or forms.get('fused')
                      or {}).get('backbone_ms')
    if fused_backbone:
        out['backbone_speedup'] = backbone / fused_backbone['median']
        out['amdahl_predicted'] = total / (rest + fused_backbone['median'])
    best = out.get('fused_speedup') or out.get('backbone_fused_speedup')
    if best and out['amdahl_ceiling']:
        out['share_of_ceiling'] = best / out['amdahl_ceiling']
    return out


def _tokens(name: str) -> List[str]:
    return re.split(r'[^a-z0-9]+', name.lower())


def default_pairs(models: Sequence[Dict]) -> List[Tuple[str, str]]:
    """The paper's (RepVGG, ResNet) pairs among ``models``, else all."""
    candidates = [m['name'] for m in models if m['role'] == 'candidate']
    baselines = [m['name'] for m in models if m['role'] == 'baseline']
    pairs = [(c, b) for c in candidates for b in baselines
             for c_key, b_key in PAPER_PAIRS
             if c_key in _tokens(c) and b_key in _tokens(b)]
    return pairs or [(c, b) for c in candidates for b in baselines]


def _peak(model: Dict, form: str) -> Optional[float]:
    result = _ok_forms(model).get(form)
    return result['memory']['peak_mb'] if result else None


def _conv_rate(model: Dict, form: str) -> Optional[float]:
    profile = _ok_forms(model).get(form, {}).get('backbone_profile')
    return profile['conv_gflops_per_s'] if profile else None


def compare(candidate: Dict, baseline: Dict) -> Dict:
    """RepVGG ``candidate`` against ResNet ``baseline`` (ratios > 1: the
    candidate is faster)."""
    fast, base_fast = candidate['fast_path'], baseline['fast_path']
    base_unfused = _median(baseline, 'unfused')
    return dict(
        candidate=candidate['name'],
        baseline=baseline['name'],
        fast_path=fast,
        fast_path_speedup=_ratio(base_unfused, fast and fast['median_ms']),
        baseline_fast_path=base_fast,
        fast_path_like_for_like=_ratio(base_fast and base_fast['median_ms'],
                                       fast and fast['median_ms']),
        fused_vs_baseline_unfused=_ratio(base_unfused,
                                         _median(candidate, 'fused')),
        fp32_like_for_like=_ratio(
            _median(baseline, 'fused'), _median(candidate, 'fused')),
        reduced_like_for_like=_ratio(
            _median(baseline, 'reduced'), _median(candidate, 'reduced')),
        int8_like_for_like=_ratio(
            _median(baseline, 'int8'), _median(candidate, 'int8')),
        winograd_like_for_like=_ratio(
            _median(baseline, 'winograd_lowres'),
            _median(candidate, 'winograd_lowres')),
        gflop_ratio=_ratio(
            _ok_forms(candidate).get('fused', {}).get('gflop'),
            _ok_forms(baseline).get('fused', {}).get('gflop')),
        backbone_conv_gflops_per_s=dict(
            candidate=_conv_rate(candidate, 'fused'),
            baseline=_conv_rate(baseline, 'fused')),
        peak_mb=dict(
            candidate_fused=_peak(candidate, 'fused'),
            baseline_unfused=_peak(baseline, 'unfused'),
            baseline_fused=_peak(baseline, 'fused')))


def miou_rejected(miou: Optional[Dict]) -> List[str]:
    """Forms that lost more than :data:`MIOU_BOUND` in the mIoU check, and
    the unscored forms of a failed one's precision (no safer)."""
    rows = (miou or {}).get('forms', [])
    failed = [
        row['form'] for row in rows if row.get('miou_diff') is not None
        and abs(row['miou_diff']) > MIOU_BOUND
    ]
    precisions = {parse_form(name).precision for name in failed}
    scored = {row['form'] for row in rows}
    return failed + [
        name for name in NAMED_FORMS
        if name not in scored and parse_form(name).precision in precisions
    ]


def analyze(results: Dict,
            pairs: Optional[Sequence[Tuple[str, str]]] = None) -> Dict:
    """Add ``fusion`` and ``fast_path`` to each model; return comparisons
    and the forms the mIoU check kept out of the fast path."""
    models = {m['name']: m for m in results['models']}
    rejected = miou_rejected(results.get('miou_check'))
    for model in results['models']:
        model['fusion'] = fusion_summary(model)
        model['fast_path'] = fast_path(model, rejected)
    pairs = default_pairs(results['models']) if pairs is None else pairs
    comparisons = [compare(models[c], models[b]) for c, b in pairs]
    return dict(
        comparisons=comparisons,
        fast_path_rejected=rejected,
        miou_bound=MIOU_BOUND)
