"""Benchmark results as Markdown, JSON and a PNG chart."""
import json
import os
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from ..atomic_io import atomic_open, atomic_write
from .analysis import MIOU_BOUND


def _fmt(value, digits: int = 1, pct: bool = False) -> str:
    if value is None:
        return '–'
    if pct:
        return f'{100.0 * value:.{digits}f}%'
    return f'{value:.{digits}f}'


def _fmt_small(value: Optional[float]) -> str:
    return '–' if value is None else f'{value:.1e}'


def markdown_table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '|' + '|'.join(' --- ' for _ in header) + '|'
    ]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return lines


def _isa_note(features: Optional[Dict]) -> str:
    # What the kernels use: every figure depends on it.
    if not features:
        return ''
    cap = features.get('onednn_max_cpu_isa')
    capped = f' (ONEDNN_MAX_CPU_ISA={cap})' if cap else ''
    return (f'; kernels use {features["isa_level"]}{capped}, int8 '
            f'activations {features["int8_activation_bits"]} bits')


def _header(results: Dict) -> List[str]:
    s, m, c = results['settings'], results['machine'], results['ceilings']
    flags = ', '.join(k for k, v in m['cpu_flags'].items() if v) or 'none'
    versions = m['versions']
    device = m.get('gpu') or f'{m["cpu"]} ({m["cpus_usable"]} usable CPUs)'
    low = m['reduced_dtype']
    int8 = f', int8 3x3 conv {c["int8"]["conv3x3"]:.1f}' if c.get(
        'int8') else ''
    reduced = (f', {low} matmul {c[low]["matmul"]:.1f}, {low} 3x3 conv '
               f'{c[low]["conv3x3"]:.1f}'
               if c.get(low) else f' ({low}: not native here, not measured)')
    isa = _isa_note(m.get('features'))
    return [
        f'Input {s["shape"][0]}x{s["shape"][1]}, batch {s["batch"]}, on '
        f'{s["device"]}: {device}; {m["torch_threads"]} torch threads; '
        f'CPU flags: {flags}{isa}.',
        f'torch {versions["torch"]} ({m["onednn"]}), mmseg '
        f'{versions["mmsegmentation"]}, mmcv {versions["mmcv"]}, mmengine '
        f'{versions["mmengine"]}, onnxruntime {versions["onnxruntime"]}, '
        f'Python {m["python"]}. Started {m["time_utc"]} UTC, '
        f'{m["wall_s"]:.0f} s; load average {m["load_average"][0]:.2f} at '
        f'the start, {m["load_average_end"][0]:.2f} at the end.',
        f'Ceilings measured in this run (GFLOP/s): fp32 matmul '
        f'{c["fp32"]["matmul"]:.1f}, fp32 3x3 conv '
        f'{c["fp32"]["conv3x3"]:.1f}{reduced}{int8}.',
        f'Each form: {s["warmup"]} warm-up + {s["runs"]} timed runs; '
        'latency is the median (min-max). Weights: ' +
        '; '.join(f'{model["name"]} {model.get("weights", "random")}'
                  for model in results['models']) + '.', ''
    ]


def _form_row(model: Dict, form: Dict, unfused: Optional[float]) -> list:
    if form['status'] != 'ok':
        return [model['name'], form['label']] + [form['status']] + ['–'] * 10
    lat, mem = form['latency_ms'], form['memory']
    profile = form.get('backbone_profile')
    accuracy = form.get('accuracy', {})
    return [
        model['name'], form['label'],
        f'{lat["median"]:.1f} ({lat["min"]:.1f}-{lat["max"]:.1f})',
        _fmt(form['images_per_s'], 2),
        _fmt(unfused / lat['median'] if unfused else None, 2),
        _fmt(form['gflop'], 0),
        _fmt(form['gflops_per_s']),
        _fmt(form['share_of_fp32_matmul'], 0, pct=True),
        _fmt((form.get('backbone_ms') or {}).get('median')),
        _fmt(profile and profile['share_of_ceiling'], 0, pct=True),
        f'{_fmt(mem["peak_mb"], 0)} ({_fmt(mem["weights_mb"], 0)} + '
        f'{_fmt(mem["run_mb"], 0)})',
        _fmt_small(accuracy.get('max_rel_diff')),
        _fmt(accuracy.get('label_agreement'), 2, pct=True)
    ]


def _forms_table(results: Dict) -> List[str]:
    header = [
        'model', 'form', 'latency ms', 'images/s', 'x unfused', 'GFLOP',
        'GFLOP/s', '% of fp32 matmul', 'backbone ms',
        'backbone convs % of ceiling', 'peak MB (weights + run)',
        'max rel. diff', 'labels as fp32 (this input)'
    ]
    rows = []
    for model in results['models']:
        unfused = next((f['latency_ms']['median'] for f in model['forms']
                        if f['form'] == 'unfused' and f['status'] == 'ok'),
                       None)
        rows += [_form_row(model, form, unfused) for form in model['forms']]
    notes = [
        f'- {model["name"]}, {form["label"]}: {form["status"]}: '
        f'{form.get("note", "")}' for model in results['models']
        for form in model['forms'] if form['status'] != 'ok'
    ]
    return markdown_table(header, rows) + ([''] + notes if notes else [])


def _fusion_table(results: Dict) -> List[str]:
    rows = []
    for model in results['models']:
        f = model.get('fusion')
        if not f:
            continue
        rows.append([
            model['name'],
            _fmt(f['unfused_ms']),
            _fmt(f['backbone_share'], 0, pct=True),
            _fmt(f.get('backbone_speedup'), 2),
            _fmt(f.get('backbone_fused_speedup'), 2),
            _fmt(f.get('fused_speedup'), 2),
            _fmt(f.get('amdahl_predicted'), 2),
            _fmt(f['amdahl_ceiling'], 2),
            _fmt(f.get('share_of_ceiling'), 0, pct=True)
        ])
    header = [
        'model', 'unfused ms', 'backbone share', 'backbone alone: fusion '
        'speed-up', 'end to end: backbone-fused', 'end to end: fused',
        'Amdahl, from backbone speed-up', 'Amdahl ceiling (backbone free)',
        'fused / ceiling'
    ]
    return markdown_table(header, rows) if rows else []


def _fast_path_table(results: Dict) -> List[str]:
    rows = []
    for model in results['models']:
        fast = model.get('fast_path')
        unfused = (model.get('fusion') or {}).get('unfused_ms')
        if fast:
            rows.append([
                model['name'], fast['label'],
                _fmt(fast['median_ms']),
                _fmt(unfused / fast['median_ms'] if unfused else None, 2)
            ])
    header = ['model', 'fast path (fastest deploy form)', 'ms', 'x unfused']
    if not rows:
        return []
    rejected = results.get('fast_path_rejected')
    note = [
        '', 'Left out of the fast path: lost more than '
        f'{MIOU_BOUND} mIoU in the mIoU check: '
        f'{", ".join(rejected)}.'
    ] if rejected else []
    return markdown_table(header, rows) + note


def _comparison_table(results: Dict) -> List[str]:
    rows = []
    for c in results['comparisons']:
        conv, peak = c['backbone_conv_gflops_per_s'], c['peak_mb']
        conv_rates = f'{_fmt(conv["candidate"])} / {_fmt(conv["baseline"])}'
        rows.append([
            f'{c["candidate"]} vs {c["baseline"]}',
            c['fast_path']['label'] if c['fast_path'] else '–',
            _fmt(c['fast_path_speedup'], 2),
            _fmt(c['fused_vs_baseline_unfused'], 2),
            _fmt(c['fp32_like_for_like'], 2),
            _fmt(c['reduced_like_for_like'], 2),
            _fmt(c.get('int8_like_for_like'), 2),
            _fmt(c.get('winograd_like_for_like'), 2),
            _fmt(c['fast_path_like_for_like'], 2),
            _fmt(c['gflop_ratio'], 2), conv_rates, ' / '.join(
                _fmt(peak[k], 0)
                for k in ('candidate_fused', 'baseline_unfused',
                          'baseline_fused'))
        ])
    header = [
        'RepVGG vs ResNet', 'fast path', 'fast path vs ResNet unfused',
        'fused fp32 vs ResNet unfused', 'like for like: fused fp32',
        'like for like: reduced', 'like for like: int8',
        'like for like: Winograd + low-res PSP', 'like for like: fast paths',
        'GFLOP ratio', 'backbone conv GFLOP/s (RepVGG / ResNet)',
        'peak MB (RepVGG fused / ResNet unfused / ResNet fused)'
    ]
    return markdown_table(header, rows) if rows else []


def _miou_table(results: Dict) -> List[str]:
    miou = results.get('miou_check')
    if not miou:
        return []
    rows = [[
        r['label'],
        _fmt(r['mIoU'], 2),
        _fmt(r['miou_diff'], 2),
        _fmt(r['label_agreement'], 3, pct=True)
    ] for r in miou['forms']]
    return [
        f'mIoU on the validation data of {miou["config"]} '
        f'({miou["images"]} images, checkpoint {miou["checkpoint"]}):', ''
    ] + markdown_table(
        ['form', 'mIoU', 'difference (points)', 'labels as fp32 (val images)'],
        rows)


def _winograd_table(results: Dict) -> List[str]:
    """Per Winograd form: 3x3 convs by chosen algorithm, their time each
    way."""
    rows = []
    for model in results['models']:
        for form in model['forms']:
            choices = [
                c for c in form.get('winograd_choices') or [] if c['choice']
            ]
            if not choices:
                continue
            counts = Counter(c['choice'] for c in choices)
            direct = sum(c['direct_ms'] or 0 for c in choices)
            best = sum(
                min(c['direct_ms'] or 0, c['winograd_ms'] or float('inf'))
                for c in choices)
            rows.append([
                model['name'], form['label'],
                ', '.join(f'{k} {v}' for k, v in sorted(counts.items())),
                _fmt(direct, 0),
                _fmt(best, 0),
                _fmt(direct / best if best else None, 2)
            ])
    header = [
        'model', 'form', '3x3 convs by choice', 'their direct ms', 'chosen ms',
        'speed-up of those convs'
    ]
    return markdown_table(header, rows) if rows else []


def _int8_table(results: Dict) -> List[str]:
    """Per int8 form, each conv's precision and its int8 error against
    fp32 on the calibration batch."""
    rows = [[
        model['name'], form['form'], layer['name'],
        'x'.join(map(str, layer['shape'])),
        str(layer['groups']), layer['precision'],
        _fmt(layer['error'], 3)
    ] for model in results['models'] for form in model['forms']
            for layer in form.get('int8_layers') or []]
    header = ['model', 'form', 'conv', 'weight', 'groups', 'runs in', 'error']
    return ['Per conv of the int8 forms:', ''] + markdown_table(
        header, rows) if rows else []


def _skipped_table(results: Dict) -> List[str]:
    """Forms and ceilings that did not run here, and why (once each)."""
    reasons = dict(results.get('ceilings', {}).get('skipped') or {})
    lines = [f'* ceiling {name}: {why}' for name, why in reasons.items()]
    seen = set()
    for model in results['models']:
        for form in model['forms']:
            if form['status'] != 'ok' and form['form'] not in seen:
                seen.add(form['form'])
                lines.append(f'* {form["form"]} ({form["status"]}): '
                             f'{form["note"]}')
    return ['Not run on this machine:', ''] + lines if lines else []


def render_markdown(results: Dict) -> str:
    """The whole report: settings, forms, fusion, comparisons, skips."""
    sections = [_header(results)]
    if results.get('interrupted'):
        sections[0].append('**Interrupted (Ctrl-C)**: only the forms '
                           'measured before it are reported.')
    if results['models']:
        sections.append(_forms_table(results))
    for part in (_fusion_table(results), _fast_path_table(results),
                 _comparison_table(results), _winograd_table(results),
                 _int8_table(results), _miou_table(results),
                 _skipped_table(results)):
        if part:
            sections.append(part)
    return '\n'.join('\n'.join(lines) + '\n' for lines in sections)


def _colors(keys: Sequence[str]) -> Dict[str, tuple]:
    """One colour per key, no two alike for up to 28 keys."""
    from matplotlib import colormaps
    palette = (
        list(colormaps['tab10'].colors) +
        list(colormaps['tab20'].colors[1::2]) +
        list(colormaps['Dark2'].colors))
    return {key: palette[i % len(palette)] for i, key in enumerate(keys)}


#: One bar: (group, key, label, median, min, max); a key has one colour.
Bar = Tuple[str, str, str, float, float, float]


def plot_bars(bars: Sequence[Bar], title: str, xlabel: str, path: str) -> None:
    """Horizontal bars under bold group headings, coloured by key, with
    min-max whiskers and the legend beside the axes."""
    # The Agg canvas directly, not pyplot: no global backend is switched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    keys = list(dict.fromkeys(bar[1] for bar in bars))
    colors, rows, headings, y = _colors(keys), [], [], 0.0
    for group in dict.fromkeys(bar[0] for bar in bars):
        headings.append((y, group))
        for bar in (b for b in bars if b[0] == group):
            y += 1
            rows.append((y, bar))
        y += 1.5
    fig = Figure(figsize=(11, 2.5 + 0.26 * (len(rows) + 2 * len(headings))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key in keys:
        mine = [(y, bar) for y, bar in rows if bar[1] == key]
        ax.barh([y for y, _ in mine], [bar[3] for _, bar in mine],
                xerr=[[max(bar[3] - bar[4], 0) for _, bar in mine],
                      [max(bar[5] - bar[3], 0) for _, bar in mine]],
                color=colors[key],
                label=mine[0][1][2])
        for y, bar in mine:
            value = f'{bar[3]:.0f}' if bar[3] >= 100 else f'{bar[3]:.3g}'
            ax.text(bar[5], y, f' {value}', va='center', fontsize=7)
    ax.set_yticks([y for y, _ in rows])
    ax.set_yticklabels([bar[2] for _, bar in rows], fontsize=8)
    for y, group in headings:
        ax.text(0, y, f' {group}', va='center', fontsize=9, fontweight='bold')
    ax.set_ylim(max([y for y, _ in rows] or [1]) + 1, -1)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    if keys:
        ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1))
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=100, bbox_inches='tight')


def latency_bars(results: Dict) -> List[Bar]:
    """A bar per measured form of each model: median latency (ms)."""
    return [(model['name'], form['form'], form['label'],
             form['latency_ms']['median'], form['latency_ms']['min'],
             form['latency_ms']['max']) for model in results['models']
            for form in model['forms'] if form['status'] == 'ok']


def chart_title(results: Dict, what: str) -> str:
    """What was measured, on which machine (CPU features or GPU), when."""
    machine = results.get('machine') or {}
    # Older runs name the features by their flags only.
    flags = [f for f, on in (machine.get('cpu_flags') or {}).items() if on]
    isa = (machine.get('features') or {}).get('isa_level') or ' '.join(flags)
    where = machine.get('description') or machine.get(
        'gpu') or f'{machine.get("cpu", "?")} ({isa})'
    return f'{what}\n{where}, {machine.get("time_utc", "")} UTC'


def write_report(results: Dict, out_dir: str, stem: str, markdown: str,
                 bars: Sequence[Bar], title: str,
                 xlabel: str) -> Dict[str, str]:
    """Write ``STEM.json``, ``.md`` and ``.png`` (a bar chart) into
    ``out_dir`` atomically: the one writer of the benchmarks.

    Returns:
        dict: Paths by kind (``json``, ``markdown``, ``png``).
    """
    paths = {
        kind: osp.join(out_dir, f'{stem}.{ext}')
        for kind, ext in (('json', 'json'), ('markdown', 'md'), ('png', 'png'))
    }
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(paths['json'],
                 json.dumps(results, indent=2, default=str) + '\n')
    atomic_write(paths['markdown'], markdown)
    plot_bars(bars, title, xlabel, paths['png'])
    return paths


def write_outputs(results: Dict, out_dir: str) -> Dict[str, str]:
    """``benchmark.json``, ``.md`` and ``.png`` of :func:`run_benchmark`."""
    s = results['settings']
    title = chart_title(
        results, f'latency at {s["shape"][0]}x{s["shape"][1]}, batch '
        f'{s["batch"]}')
    return write_report(
        results, out_dir, 'benchmark', render_markdown(results),
        latency_bars(results), title, 'latency, ms (median of the timed runs; '
        'whiskers: min-max)')
