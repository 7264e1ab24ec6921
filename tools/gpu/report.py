"""The GPU check's Markdown: what ran, the tables, the checks.

:mod:`.check` gathers a JSON-ready ``results`` dict; this module only
reads it. :func:`measurements_from_benchmarks` turns
``tools/benchmark.py``'s JSON into ``{model: {form: {size: numbers}}}``,
:func:`best_form` picks a model's fastest shippable form at a size, and
:func:`render_report` writes ``gpu_check.md`` (the verdicts come from
:mod:`.verdicts`).
"""
from typing import Dict, List, Optional, Sequence, Tuple

from mmseg_repvgg.benchmark.training import render_table
from mmseg_repvgg.deploy.forms import FORMS

REDUCED = ('fp16', 'bf16')


def measurements_from_benchmarks(runs: Sequence[Tuple[str, Dict]],
                                 labels: Dict[str, str]) -> Dict:
    """``{label: {form: {size: numbers}}}`` of benchmark results.

    Args:
        runs: ``(size, results)``: ``results`` is what
            ``tools/benchmark.py`` wrote to ``benchmark.json``; a later run
            of the same model, form and size does not replace an earlier.
        labels: Model label by the benchmark's model name (config name).
    """
    table: Dict[str, Dict[str, Dict[str, Dict]]] = {}
    for size, results in runs:
        for model in results['models']:
            label = labels.get(model['name'], model['name'])
            for form in model['forms']:
                row = table.setdefault(label, {}).setdefault(form['form'], {})
                if size in row:
                    continue
                accuracy = form.get('accuracy') or {}
                ok = form['status'] == 'ok'
                row[size] = dict(
                    status=form['status'],
                    label=form.get('label', form['form']),
                    precision=form.get('precision'),
                    note=form.get('note'),
                    ms=form['latency_ms']['median'] if ok else None,
                    peak_mb=(form.get('memory') or {}).get('peak_mb'),
                    max_rel_diff=accuracy.get('max_rel_diff'),
                    label_agreement=accuracy.get('label_agreement'))
    return table


def ok_cell(row: Dict, size: str) -> Optional[Dict]:
    cell = row.get(size)
    return cell if cell and cell['status'] == 'ok' else None


def best_form(measurements: Dict, model: str,
              size: str) -> Optional[Tuple[str, float]]:
    """``(form, ms)`` of ``model``'s fastest shippable form at ``size``
    (any precision; the benchmark's ablations do not count), or None."""
    found = [(form, cell['ms'])
             for form, row in (measurements.get(model) or {}).items()
             if form in FORMS for cell in [ok_cell(row, size)] if cell]
    return min(found, key=lambda item: item[1]) if found else None


def _fmt(value, spec: str, none: str = '—') -> str:
    return none if value is None else format(value, spec)


def _row(cells: Sequence[str]) -> str:
    return '| ' + ' | '.join(cells) + ' |'


def _header(cells: Sequence[str]) -> List[str]:
    return [_row(cells), '|' + ' --- |' * len(cells)]


def forms_table(results: Dict) -> List[str]:
    """Every model in every form: ms per size, peak memory, against plain
    ``reduced``, and the random-weight accuracy (information)."""
    measured = results.get('measurements') or {}
    sizes = results.get('sizes') or []
    lines = _header(['model', 'form'] + [f'ms {s}' for s in sizes] + [
        f'peak MiB {sizes[0]}' if sizes else 'peak MiB', 'reduced ms / this',
        'max rel. err vs fp32 (info)', 'labels = fp32 (info)'
    ])
    for model in [
            *results.get('candidates', []), *results.get('baselines', [])
    ]:
        forms = measured.get(model) or {}
        for form, row in forms.items():
            cells = [ok_cell(row, size) for size in sizes]
            first = next(iter(row.values()))
            base = ok_cell(forms.get('reduced') or {}, sizes[0])
            lines.append(
                _row([model, f'{first["label"]} (`{form}`)'] + [
                    _fmt(c and c['ms'], '.2f',
                         row.get(s, {}).get('status', '—'))
                    for s, c in zip(sizes, cells)
                ] + [
                    _fmt(cells[0] and cells[0]['peak_mb'], '.0f'),
                    _fmt(
                        base['ms'] /
                        cells[0]['ms'] if base and cells[0] else None, '.2f'),
                    _fmt(cells[0] and cells[0]['max_rel_diff'], '.1e'),
                    _fmt(
                        cells[0] and cells[0]['label_agreement'] and 100 *
                        cells[0]['label_agreement'], '.3f')
                ]))
    return lines


def best_table(results: Dict) -> List[str]:
    """Each model in its own best form, and the ratios of best to best."""
    measured = results.get('measurements') or {}
    sizes = results.get('sizes') or []
    baselines = results.get('baselines') or []
    lines = _header(['model'] + [f'best form {s} (ms)' for s in sizes] +
                    [f'x {b} ({" / ".join(sizes)})' for b in baselines])
    for model in [*results.get('candidates', []), *baselines]:
        best = [best_form(measured, model, size) for size in sizes]
        ratios = []
        for base in baselines:
            theirs = [best_form(measured, base, size) for size in sizes]
            ratios.append(' / '.join(
                _fmt(t[1] / m[1] if t and m else None, '.2f')
                for m, t in zip(best, theirs)))
        lines.append(
            _row([model] +
                 [f'`{b[0]}` {b[1]:.2f}' if b else '—'
                  for b in best] + ratios))
    return lines


def pool_table(pool: Dict) -> List[str]:
    lines = [
        f'PSP pooling op by op on {pool.get("device")} '
        f'({pool.get("dtype")}, {pool.get("channels")} channels), ms; the '
        'last two columns are candidates, equal up to rounding only '
        '(their largest difference in brackets), for information:', ''
    ]
    lines += _header([
        'map', 'bins', 'contiguous', 'channels_last', 'ours (contiguous '
        'copy)', 'equal bit for bit', 'two fp32 contractions',
        'avg_pool2d channels_last'
    ])
    for row in pool.get('rows') or []:
        candidates = [
            '—' if row.get(f'{name}_ms') is None else
            f'{row[f"{name}_ms"]:.3f} ({row[f"{name}_max_diff"]:.1e})'
            for name in ('separable', 'fixed_window_cl')
        ]
        lines.append(
            _row([
                row['size'],
                str(row['bins']), f'{row["contiguous_ms"]:.3f}',
                f'{row["channels_last_ms"]:.3f}', f'{row["ours_ms"]:.3f}',
                str(row['equal'])
            ] + candidates))
    return lines


def toy_table(results: Dict) -> List[str]:
    tests = results.get('tests') or {}
    fused = (tests.get('fused') or {}).get('miou')
    lines = _header(['toy model (trained)', 'mIoU', 'vs fused fp32'])
    for name in ['fused', 'unfused', 'deploy'
                 ] + [f'form {f}' for f in results.get('toy_forms') or []]:
        miou = (tests.get(name) or {}).get('miou')
        lines.append(
            _row([
                name,
                _fmt(miou, '.2f'),
                _fmt(miou - fused if None not in (miou, fused) else None,
                     '+.2f')
            ]))
    return lines


def render_report(results: Dict, checks) -> str:
    """The Markdown of ``gpu_check.md``: what ran, the tables, the checks."""
    machine = results.get('machine') or {}
    cuda = results.get('device') == 'cuda'
    where = (f'{machine.get("gpu")}; torch {machine.get("torch")}, CUDA '
             f'{machine.get("cuda")}, cuDNN {machine.get("cudnn")}'
             if cuda else f'{machine.get("cpu")} (CPU dry run); torch '
             f'{machine.get("torch")}')
    lines = [
        f'# GPU check: {results.get("device")}', '', f'- machine: {where}',
        f'- run: {results.get("started_utc")}, {results.get("wall_s", 0):.0f}'
        f' s; parts: {", ".join(results.get("parts") or [])}',
        f'- inference: batch 1, median of {results.get("runs")} timed runs '
        f'after {results.get("warmup")} warm-ups' +
        (', cuDNN benchmark mode, fp32 without TF32' if cuda else ''),
        '- random-weight errors and label agreement (BN calibrated) are '
        'information only; fp16 is judged by mIoU on the trained toy', ''
    ]
    if results.get('pool'):
        lines += ['## PSP pooling', ''] + pool_table(results['pool']) + ['']
    if results.get('tests'):
        lines += ['## Forms on the trained toy model', ''
                  ] + toy_table(results) + ['']
    if results.get('measurements'):
        lines += ['## Each model in its best form', ''
                  ] + best_table(results) + ['', '## Every form', ''
                                             ] + forms_table(results) + ['']
    train = results.get('trainbench') or {}
    if train.get('rows'):
        lines += ['## Training', ''] + render_table(train) + ['']
    lines += ['## Checks', '']
    lines += [f'- {status} {text}' for status, text in checks]
    return '\n'.join(lines) + '\n'
