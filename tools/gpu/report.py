"""The GPU check's table and its PASS/FAIL lines (issue 19).

:mod:`.gpu_check` runs the steps and gathers a JSON-ready ``results`` dict;
this module only reads it: :func:`measurements_from_benchmarks` turns
``tools/benchmark.py``'s JSON into ``{model: {form: {size: numbers}}}``,
:func:`check_results` judges the run against the issue's targets and
:func:`render_report` writes the Markdown.
"""
from typing import Dict, List, Optional, Sequence, Tuple

#: The issue's speed targets, in fp16: (RepVGG model, baseline, least
#: speed-up; 1.0 means strictly faster).
SPEED_TARGETS = (('B1g2-fast', 'R101-D8', 1.6), ('B1g2-fast', 'R50-D8', 1.0),
                 ('B2-fast', 'R101-D8', 1.0))
#: fp16 logits against fp32 (max abs difference over the largest logit),
#: and the share of pixels whose label must agree.
FP16_REL_ERROR = 1e-2
FP16_LABEL_AGREEMENT = 0.999
#: mIoU points by which the fused and deploy models may differ from the
#: unfused one (mmseg prints two decimals).
MIOU_TOLERANCE = 0.01
REDUCED = ('fp16', 'bf16')

Check = Tuple[str, str]  # ('PASS' | 'FAIL' | 'SKIP', text)


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


def _ok(row: Dict, size: str) -> Optional[Dict]:
    cell = row.get(size)
    return cell if cell and cell['status'] == 'ok' else None


def best_ratio(measurements: Dict, model: str, baseline: str, size: str,
               precisions: Sequence[str]) -> Optional[Tuple[float, str, str]]:
    """``baseline ms / model ms`` of the two best forms among those both
    ran at ``size`` in one of ``precisions`` (like for like), with the
    forms; None when they share none."""
    mine, theirs = measurements.get(model, {}), measurements.get(baseline, {})
    shared = [
        form for form in mine
        if form in theirs and _ok(mine[form], size) and _ok(
            theirs[form], size) and mine[form][size]['precision'] in precisions
    ]
    if not shared:
        return None
    best = min(shared, key=lambda form: mine[form][size]['ms'])
    base = min(shared, key=lambda form: theirs[form][size]['ms'])
    return theirs[base][size]['ms'] / mine[best][size]['ms'], best, base


def _worst_accuracy(row: Dict, sizes: Sequence[str]):
    cells = [_ok(row, size) for size in sizes]
    diffs = [
        c['max_rel_diff'] for c in cells if c and c['max_rel_diff'] is not None
    ]
    agree = [
        c['label_agreement'] for c in cells
        if c and c['label_agreement'] is not None
    ]
    return (max(diffs) if diffs else None, min(agree) if agree else None)


def _pipeline_checks(results: Dict) -> List[Check]:
    checks: List[Check] = []
    train = results.get('train') or {}
    ok = train.get('code') == 0 and train.get('checkpoint') and train.get(
        'deploy_final')
    checks.append(('PASS' if ok else 'FAIL',
                   f'training ({train.get("command", "not run")}): exit '
                   f'{train.get("code")}, checkpoint '
                   f'{train.get("checkpoint")}, deploy_final.pth '
                   f'{"written" if train.get("deploy_final") else "missing"}'))
    for key, text in (('amp', 'AMP: the checkpoint holds the loss scaler of '
                       'AmpOptimWrapper'),
                      ('sync_bn', 'SyncBN kept: distributed run, SyncBN not '
                       'reverted to BN')):
        if key in train:
            checks.append(('PASS' if train[key] else 'FAIL', text))
    tests = results.get('tests') or {}
    unfused = (tests.get('unfused') or {}).get('miou')
    for name in ('fused', 'deploy'):
        miou = (tests.get(name) or {}).get('miou')
        good = (
            miou is not None and unfused is not None
            and abs(miou - unfused) <= MIOU_TOLERANCE)
        checks.append(('PASS' if good else 'FAIL',
                       f'mIoU {name} {miou} == unfused {unfused} (within '
                       f'{MIOU_TOLERANCE})'))
    fused_log = (tests.get('fused') or {}).get('fused_log')
    if fused_log is not None:
        checks.append(
            ('PASS' if fused_log
             and not (tests.get('unfused') or {}).get('fused_log') else 'FAIL',
             'ReparamHook fused the model before the '
             'fused test only'))
    return checks


def _benchmark_checks(results: Dict) -> List[Check]:
    checks: List[Check] = []
    for size, code in (results.get('bench_codes') or {}).items():
        if code is None:  # not started, or stopped, for want of time
            checks.append(('SKIP', f'benchmark {size}: the time budget ran '
                           'out (--budget)'))
        else:
            checks.append(('PASS' if code == 0 else 'FAIL',
                           f'benchmark {size}: exit {code}'))
    measurements = results.get('measurements') or {}
    for model, forms in measurements.items():
        for form, cells in forms.items():
            for size, cell in cells.items():
                if cell['status'] != 'ok':
                    checks.append(
                        ('FAIL' if cell['status'] == 'failed' else 'SKIP',
                         f'{model} {form} at {size}: '
                         f'{cell["status"]}: {cell["note"]}'))
    return checks


def _target_checks(results: Dict) -> List[Check]:
    measurements = results.get('measurements') or {}
    sizes = results.get('sizes') or []
    checks: List[Check] = []
    for model, baseline, least in SPEED_TARGETS:
        for size in sizes:
            found = best_ratio(measurements, model, baseline, size, REDUCED)
            goal = (f'>= {least:g}x' if least > 1 else 'faster')
            if found is None:
                checks.append(('SKIP', f'{model} vs {baseline} fp16 at '
                               f'{size}: no form measured for both'))
                continue
            ratio, mine, theirs = found
            good = ratio >= least if least > 1 else ratio > 1.0
            checks.append(('PASS' if good else 'FAIL',
                           f'{model} ({mine}) vs {baseline} ({theirs}) fp16 '
                           f'at {size}: {ratio:.2f}x, target {goal}'))
    for model in results.get('candidates') or []:
        for form, row in (measurements.get(model) or {}).items():
            if not any(c['precision'] in REDUCED and c['status'] == 'ok'
                       for c in row.values()):
                continue
            diff, agree = _worst_accuracy(row, sizes)
            good = (
                diff is not None and diff <= FP16_REL_ERROR
                and agree is not None and agree >= FP16_LABEL_AGREEMENT)
            checks.append(
                ('PASS' if good else 'FAIL',
                 f'{model} {form}: logits {diff:.2e} of fp32\'s largest '
                 f'(<= {FP16_REL_ERROR:g}), labels {100 * agree:.3f}% equal '
                 f'(>= {100 * FP16_LABEL_AGREEMENT:g}%)'
                 if diff is not None and agree is not None else
                 f'{model} {form}: no accuracy against fp32 recorded'))
    return checks


def check_results(results: Dict) -> List[Check]:
    """The run's checks: pipeline, benchmark forms, then the targets.

    Where ``results['skips']`` says a part was not run (the CPU dry run:
    AMP, SyncBN, fp16), its one SKIP line stands for its checks.
    """
    checks = [('SKIP', text) for text in results.get('skips') or []]
    checks += _pipeline_checks(results) + _benchmark_checks(results)
    if results.get('fp16', True):
        checks += _target_checks(results)
    return checks


def _fmt(value, spec: str, none: str = '—') -> str:
    return none if value is None else format(value, spec)


def _table(results: Dict) -> List[str]:
    measurements = results.get('measurements') or {}
    sizes, baselines = results.get('sizes') or [], results.get(
        'baselines') or []
    head = (['model', 'form'] + [f'ms {s}' for s in sizes] +
            [f'peak MiB {sizes[0]}' if sizes else 'peak MiB'] +
            [f'x {b} ({" / ".join(sizes)})'
             for b in baselines] + ['max rel. err vs fp32', 'labels = fp32'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    models = list(results.get('candidates') or []) + list(baselines)
    for model in models:
        for form, row in (measurements.get(model) or {}).items():
            label = next(iter(row.values()))['label']
            cells = [_ok(row, size) for size in sizes]
            ratios = []
            for base in baselines:
                theirs = (measurements.get(base) or {}).get(form) or {}
                ratios.append(' / '.join(
                    _fmt(
                        _ok(theirs, size)['ms'] /
                        cell['ms'] if cell and _ok(theirs, size) else None,
                        '.2f') for size, cell in zip(sizes, cells)))
            diff, agree = _worst_accuracy(row, sizes)
            lines.append('| ' + ' | '.join([model, f'{label} (`{form}`)'] + [
                _fmt(c and c['ms'], '.1f',
                     row.get(s, {}).get('status', '—'))
                for s, c in zip(sizes, cells)
            ] + [
                _fmt(cells[0] and cells[0]['peak_mb'], '.0f') if cells else '—'
            ] + ratios + [
                _fmt(diff, '.1e'),
                _fmt(None if agree is None else 100 * agree, '.3f') +
                ('%' if agree is not None else '')
            ]) + ' |')
    return lines


def render_report(results: Dict, checks: Sequence[Check]) -> str:
    """The Markdown of ``gpu_check.md``: what ran, the table, the checks."""
    machine = results.get('machine') or {}
    cuda = results.get('device') == 'cuda'
    where = (f'{machine.get("gpu")}; torch {machine.get("torch")}, CUDA '
             f'{machine.get("cuda")}, cuDNN {machine.get("cudnn")}' if cuda
             else f'{machine.get("cpu")}; torch {machine.get("torch")}')
    lines = [
        f'# GPU check (issue 19): {results.get("device")}', '',
        f'- machine: {where}',
        f'- run: {results.get("started_utc")}, {results.get("wall_s", 0):.0f} '
        f's; batch 1, median of {results.get("runs")} timed runs after '
        f'{results.get("warmup")} warm-ups' +
        (', cudnn.benchmark on' if cuda else ''),
        ('- fp32 is true fp32 (NVIDIA_TF32_OVERRIDE=0: no TF32); '
         if cuda else '- CPU dry run: fp32 forms only; ') +
        'errors and label agreement are the worst over the sizes, against '
        'the same model fused in fp32, on random weights with calibrated BN',
        '- x BASELINE: its latency over this row\'s, same form, per size', ''
    ] + _table(results) + ['', '## Checks', '']
    lines += [f'- {status} {text}' for status, text in checks]
    return '\n'.join(lines) + '\n'
