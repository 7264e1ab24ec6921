"""The GPU check's PASS/FAIL/SKIP lines: the pipeline and the targets,
judged from the JSON-ready ``results`` of :mod:`.check`.

Each model is judged in its own best form (the fastest shippable form it
ran at a size): the baselines get every trick that is not RepVGG's own,
so a ratio means what it says. The fp16 label agreement on random weights
is information only (:mod:`.report`); fp16 accuracy is judged by mIoU on
the trained toy model.
"""
from typing import Dict, List, Optional, Sequence, Tuple

from .report import REDUCED, best_form, ok_cell

Check = Tuple[str, str]  # ('PASS' | 'FAIL' | 'SKIP', text)

#: B1g2-fast's best form at 1024x2048: at most this many ms.
B1G2_FAST_MS = 8.5
#: (model, baseline, least speed-up best form over best form; 1.0 means
#: strictly faster), at every size.
SPEED_TARGETS = (('B1g2-fast', 'R101-D8', 1.8), ('B1g2-fast', 'R50-D8', 1.0))
#: A shippable fp16 form may be this much slower than plain ``reduced``
#: and still count as as fast (timing noise of medians of 10 runs).
NOISE = 1.03
#: Why a form is expected to be slower than ``reduced``, where known.
WHY_SLOWER = {
    'autocast':
    'autocast casts the fp32 weights to fp16 in every call; '
    'it is the form that keeps fp32 weights, not a fast one',
    'compiled':
    'inductor picks its own layouts and kernels; measured for '
    'information',
}
#: mIoU points: fused and deploy against unfused (mmseg prints two
#: decimals), and each fp16 form against fused fp32 on the trained toy.
MIOU_TOLERANCE = 0.01
TOY_MIOU_TOLERANCE = 0.1


def _pipeline(results: Dict) -> List[Check]:
    checks: List[Check] = []
    train = results.get('train') or {}
    good = train.get('code') == 0 and train.get('checkpoint') and train.get(
        'deploy_final')
    checks.append(('PASS' if good else 'FAIL',
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
             'ReparamHook fused the model before the fused test only'))
    graphs = tests.get('cuda graphs')
    if graphs is not None:
        checks.append(
            _exit_check(
                'CUDA graph tests (tests/test_cuda_graphs'
                '.py: replay, re-capture)', graphs['code']))
    return checks + _toy_forms(results)


def _exit_check(what: str, code: Optional[int]) -> Check:
    if code is None:
        return ('SKIP', f'{what}: the time budget ran out (--budget)')
    return ('PASS' if code == 0 else 'FAIL', f'{what}: exit {code}')


def _toy_forms(results: Dict) -> List[Check]:
    """Each scored form's mIoU on the trained toy against fused fp32."""
    tests = results.get('tests') or {}
    fused = (tests.get('fused') or {}).get('miou')
    checks: List[Check] = []
    for form in results.get('toy_forms') or []:
        cell = tests.get(f'form {form}')
        if cell is None:
            checks.append(('FAIL', f'toy {form}: not scored (no checkpoint)'))
        elif cell['code'] != 0:
            checks.append(
                _exit_check(f'toy {form} (tools/test.py '
                            '--deploy-form)', cell['code']))
        else:
            miou = cell['miou']
            good = (
                miou is not None and fused is not None
                and abs(miou - fused) <= TOY_MIOU_TOLERANCE)
            checks.append(
                ('PASS' if good else 'FAIL',
                 f'toy {form}: mIoU {miou} vs fused fp32 {fused} (within '
                 f'{TOY_MIOU_TOLERANCE}, trained toy model)'))
    return checks


def _benchmarks(results: Dict) -> List[Check]:
    checks: List[Check] = []
    for size, code in (results.get('bench_codes') or {}).items():
        checks.append(_exit_check(f'benchmark {size}', code))
    for model, forms in (results.get('measurements') or {}).items():
        for form, cells in forms.items():
            for size, cell in cells.items():
                if cell['status'] != 'ok':
                    checks.append(
                        ('FAIL' if cell['status'] == 'failed' else 'SKIP',
                         f'{model} {form} at {size}: '
                         f'{cell["status"]}: {cell["note"]}'))
    pool = results.get('pool')
    if pool is not None:
        rows = pool.get('rows') or []
        if not rows:
            checks.append(_exit_check('pooling benchmark', pool.get('code')))
        else:
            equal = all(row['equal'] for row in rows)
            checks.append(
                ('PASS' if equal else 'FAIL',
                 f'PSP pooling of a contiguous copy equals the contiguous '
                 f'pooling bit for bit on {pool.get("device")} '
                 f'({len(rows)} sizes x bins, {pool.get("dtype")})'))
    train = results.get('trainbench')
    if train is not None:
        checks.append(_exit_check('training benchmark', train.get('code')))
        for row in train.get('rows') or []:
            parts = dict(row.get('train') or {})
            parts['inference'] = row.get('inference') or {}
            for part, cell in parts.items():
                if 'error' in cell:
                    checks.append(('FAIL', f'training benchmark '
                                   f'{row["name"]} {part}: {cell["error"]}'))
    return checks


def _speed_targets(results: Dict) -> List[Check]:
    measured = results.get('measurements') or {}
    sizes = results.get('sizes') or []
    checks: List[Check] = []
    if '1024x2048' in sizes:
        best = best_form(measured, 'B1g2-fast', '1024x2048')
        checks.append((
            'SKIP',
            'B1g2-fast at 1024x2048: no form measured') if best is None else (
                'PASS' if best[1] <= B1G2_FAST_MS else 'FAIL',
                f'B1g2-fast at 1024x2048: {best[1]:.2f} ms ({best[0]}), '
                f'target <= {B1G2_FAST_MS} ms'))
    for model, baseline, least in SPEED_TARGETS:
        goal = f'>= {least:g}x' if least > 1 else 'faster'
        for size in sizes:
            mine = best_form(measured, model, size)
            theirs = best_form(measured, baseline, size)
            if mine is None or theirs is None:
                checks.append(('SKIP', f'{model} vs {baseline} at {size}: '
                               'not both measured'))
                continue
            ratio = theirs[1] / mine[1]
            good = ratio >= least if least > 1 else ratio > 1.0
            checks.append(('PASS' if good else 'FAIL',
                           f'{model} ({mine[0]}) vs {baseline} ({theirs[0]}) '
                           f'at {size}, each in its best form: {ratio:.2f}x, '
                           f'target {goal}'))
    return checks


def _slower_than_reduced(results: Dict) -> List[Check]:
    """No shippable fp16 form slower than plain ``reduced``."""
    checks: List[Check] = []
    for model, forms in (results.get('measurements') or {}).items():
        for size in results.get('sizes') or []:
            base = ok_cell(forms.get('reduced') or {}, size)
            if base is None:
                continue
            slower = []
            for form, row in forms.items():
                cell = ok_cell(row, size)
                if (cell and cell['precision'] in REDUCED
                        and cell['ms'] > NOISE * base['ms']):
                    why = WHY_SLOWER.get(form)
                    slower.append(f'{form} {cell["ms"]:.1f} ms' +
                                  (f' ({why})' if why else ''))
            checks.append(
                ('FAIL' if slower else 'PASS',
                 f'{model} at {size}: no fp16 form slower than reduced '
                 f'({base["ms"]:.1f} ms, {NOISE:g}x for noise)' +
                 (': ' + '; '.join(slower) if slower else '')))
    return checks


def _training_target(results: Dict) -> List[Check]:
    rows = {
        row['name']: row
        for row in (results.get('trainbench') or {}).get('rows') or []
    }
    amp = {
        name: (row.get('train') or {}).get('amp') or {}
        for name, row in rows.items()
    }
    mine, theirs = amp.get('B1g2-fast', {}), amp.get('R101-D8', {})
    if 's_per_iter' not in mine or 's_per_iter' not in theirs:
        return [('SKIP', 'AMP training B1g2-fast vs R101-D8: not both '
                 'measured')]
    good = mine['s_per_iter'] <= theirs['s_per_iter']
    return [('PASS' if good else 'FAIL',
             f'AMP training: B1g2-fast {mine["s_per_iter"]:.3f} s/iter '
             f'(peak {mine["peak_mb"] / 1024:.2f} GB) vs R101-D8 '
             f'{theirs["s_per_iter"]:.3f} s/iter (peak '
             f'{theirs["peak_mb"] / 1024:.2f} GB), target no slower')]


def check_results(results: Dict) -> List[Check]:
    """The run's checks: what was skipped, the parts, then the targets.

    Where ``results['skips']`` says a part cannot run here (the CPU dry
    run: AMP, SyncBN, fp16), its one SKIP line stands for its checks; a
    part left out by ``--only`` has no line.
    """
    parts: Sequence[str] = results.get('parts') or ()
    checks = [('SKIP', text) for text in results.get('skips') or []]
    checks += [('FAIL', f'part {name} crashed: {error}')
               for name, error in (results.get('part_errors') or {}).items()]
    if 'train' in parts:
        checks += _pipeline(results)
    checks += _benchmarks(results)
    if results.get('fp16'):
        if 'bench' in parts:
            checks += _speed_targets(results) + _slower_than_reduced(results)
        if 'trainbench' in parts:
            checks += _training_target(results)
    return checks
