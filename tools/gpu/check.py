"""The GPU check after the install: the plan's parts, then the report.

``tools/gpu_check.py`` installs the packages (running the pooling part
while mmcv compiles), then calls :func:`run_check`, which runs the
project's own tools as a user would, each in a subprocess with its output
appended to ``gpu_check.log``:

* ``pool``: ``tools/gpu/pool_bench.py``, PSP's pooling op by op;
* ``train``: the toy Cityscapes, then ``configs/pspnet_repvgg_toy_...``
  trained long enough to score (on CUDA ``tools/dist_train.sh CONFIG 1
  --amp``: one process, so the Runner is distributed and keeps SyncBN),
  and ``tools/test.py`` of its checkpoint fused, unfused, as
  ``deploy_final.pth`` and in each fp16 form (``--deploy-form``), side by
  side, with the CUDA graph tests;
* ``bench``: ``tools/benchmark.py`` at each size, every model in every
  GPU form;
* ``trainbench``: ``tools/train_benchmark.py`` on the six paper configs;
* ``compiled`` (only when asked for): the torch.compile forms.

Then ``gpu_check.md`` and ``gpu_check.json`` (:mod:`.report`), always.
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import DictAction

from mmseg_repvgg.atomic_io import atomic_write
from mmseg_repvgg.checkpoint import safe_torch_load
from mmseg_repvgg.config import load_config
from mmseg_repvgg.datasets import make_toy_cityscapes
from mmseg_repvgg.deploy.machine import machine
from mmseg_repvgg.errors import ConfigError
from .plan import COMPILED_MODELS, TOY_CONFIG, Plan, make_plan
from .report import measurements_from_benchmarks, render_report
from .steps import REPO_ROOT, Steps
from .verdicts import check_results

#: True fp32 for the accuracy references: TF32 would flip labels.
NO_TF32 = dict(NVIDIA_TF32_OVERRIDE='0')


def _options(options: List[str]) -> Dict:
    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=DictAction)
    return parser.parse_args(['--o', *options]).o


def write_configs(plan: Plan, data_root: str, path: str) -> int:
    """Write the toy config (and the plan's other configs); returns the
    index of the toy's ReparamHook in ``custom_hooks``."""
    options = plan.options + [
        f'{split}_dataloader.dataset.data_root={data_root}'
        for split in ('train', 'val', 'test')
    ]
    cfg = load_config(osp.join(REPO_ROOT, TOY_CONFIG), _options(options))
    cfg.dump(path)
    for target, source, extra in plan.configs:
        load_config(source, _options(extra)).dump(target)
    hooks = [h.get('type') for h in cfg.get('custom_hooks', [])]
    if 'ReparamHook' not in hooks:
        raise ConfigError(f'{TOY_CONFIG} has no ReparamHook in custom_hooks')
    return hooks.index('ReparamHook')


def pool(plan: Plan, steps: Steps, work: str) -> Optional[Dict]:
    """The pooling micro-benchmark (also run while mmcv compiles)."""
    path = osp.join(work, 'pool.json')
    channels, sizes = plan.pool_shape
    command = [
        sys.executable, 'tools/gpu/pool_bench.py', '--device', plan.device,
        '--channels',
        str(channels), '--out', path, '--sizes',
        *[f'{h}x{w}' for h, w in sizes]
    ] + ([] if plan.cuda else ['--warmup', '1', '--runs', '2'])
    code, _ = steps.run('pooling benchmark', command)
    return read_pool(path, code)


def read_pool(path: str, code: Optional[int]) -> Dict:
    if code is not None and osp.isfile(path):
        with open(path) as f:
            return dict(json.load(f), code=code)
    return dict(code=code, rows=[])


def train(plan: Plan, steps: Steps, config: str, work: str) -> Dict:
    if plan.cuda:
        command = [
            'bash', 'tools/dist_train.sh', config, '1', '--amp', '--work-dir',
            work
        ]
    else:
        command = [
            sys.executable, 'tools/train.py', config, '--work-dir', work
        ]
    code, output = steps.run('train', command, dict(PYTHON=sys.executable))
    result = dict(
        command='tools/dist_train.sh CONFIG 1 --amp'
        if plan.cuda else 'tools/train.py CONFIG',
        code=code)
    last = osp.join(work, 'last_checkpoint')
    if code == 0 and osp.isfile(last):
        with open(last) as f:
            result['checkpoint'] = f.read().strip()
    deploy = osp.join(work, 'deploy_final.pth')
    result['deploy_final'] = deploy if osp.isfile(deploy) else None
    if plan.cuda and result.get('checkpoint'):
        optimizer = safe_torch_load(result['checkpoint']).get('optimizer')
        result['amp'] = 'loss_scaler' in (optimizer or {})
        result['sync_bn'] = ('Distributed training: True' in output
                             and 'reverted to BatchNormXd' not in output)
    return result


def _test_jobs(plan: Plan, config: str, checkpoint: str, hook_index: int,
               work: str) -> List[Tuple[str, List[str], Dict]]:
    deploy = osp.join(osp.dirname(checkpoint), 'deploy_final.pth')
    runs = dict(
        fused=(checkpoint, []),
        unfused=(checkpoint, [
            '--cfg-options', f'custom_hooks.{hook_index}.fuse_before_test='
            'False'
        ]),
        deploy=(deploy, []))
    for form in plan.toy_forms:
        runs[f'form {form}'] = (checkpoint, ['--deploy-form', form])
    jobs = []
    for name, (path, extra) in runs.items():
        if osp.isfile(path):
            jobs.append((f'test {name}', [
                sys.executable, 'tools/test.py', config, path, '--work-dir',
                osp.join(work, 'test_' + name.replace(' ', '_'))
            ] + extra, NO_TF32))
    if plan.cuda:  # capture, replay and re-capture on this GPU
        jobs.append(('test cuda graphs', [
            sys.executable, '-m', 'pytest', '-q',
            'tests/test_deploy/test_cuda_graphs.py'
        ], NO_TF32))
    return jobs


def test(plan: Plan, steps: Steps, config: str, checkpoint: Optional[str],
         hook_index: int, work: str) -> Dict:
    """mIoU of the checkpoint fused, unfused, as deploy_final.pth and in
    each of the plan's forms, all side by side (the toy val set is
    tiny)."""
    if not checkpoint or not osp.isfile(checkpoint):
        return dict(fused=dict(code=None, miou=None, note='no checkpoint'))
    jobs = _test_jobs(plan, config, checkpoint, hook_index, work)
    results = {}
    for (name, _, _), (code, output) in zip(jobs, steps.run_together(jobs)):
        found = re.findall(r'\bmIoU: ([0-9.]+)', output)
        results[name[len('test '):]] = dict(
            code=code,
            miou=float(found[-1]) if code == 0 and found else None,
            fused_log=bool(
                re.search(r'ReparamHook: fused \d+ RepVGG blocks', output)))
    return results


def _model_args(models: Sequence[Tuple[str, str]],
                forms: Sequence[str]) -> List[str]:
    return [f'{config}@{",".join(forms)}' for _, config in models]


def _bench_jobs(plan: Plan) -> List[Tuple]:
    jobs = []
    if 'bench' in plan.parts:
        jobs += [(f'{h}x{w}', (h, w), plan.candidates, plan.baselines, forms)
                 for (h, w), forms in zip(plan.sizes, plan.forms)]
    if 'compiled' in plan.parts:
        h, w = plan.sizes[0]
        models = [
            m for m in (*plan.candidates, *plan.baselines)
            if m[0] in COMPILED_MODELS
        ]
        jobs.append((f'compiled {h}x{w}', (h, w), models, [], ['compiled']))
    return jobs


def benchmark(plan: Plan, steps: Steps, work: str, out: str):
    """tools/benchmark.py per size (then the compiled forms); returns
    ``(size, results)`` runs and the exit code of each."""
    runs, codes = [], {}
    for name, (h, w), candidates, baselines, forms in _bench_jobs(plan):
        key = name.replace(' ', '_')
        bench_dir = osp.join(work, f'bench_{key}')
        command = [
            sys.executable, 'tools/benchmark.py',
            *_model_args(candidates, forms), '--baselines',
            *_model_args(baselines, forms), '--shape',
            str(h),
            str(w), '--device', plan.device, '--warmup',
            str(plan.warmup), '--runs',
            str(plan.runs), '--profile-forms', '--out-dir', bench_dir,
            *plan.bench_args
        ]
        code, _ = steps.run(f'benchmark {name}', command, NO_TF32)
        codes[name] = code
        path = osp.join(bench_dir, 'benchmark.json')
        if code == 0 and osp.isfile(path):
            shutil.copy(path, osp.join(out, f'bench_{key}.json'))
            with open(path) as f:
                runs.append((f'{h}x{w}', json.load(f)))
    return runs, codes


def train_benchmark(plan: Plan, steps: Steps, work: str, out: str) -> Dict:
    """tools/train_benchmark.py on the plan's models (torch's default
    fp32: TF32 convs allowed, as users train)."""
    out_dir = osp.join(work, 'train_benchmark')
    command = [
        sys.executable, 'tools/train_benchmark.py',
        *[f'{name}={config}' for name, config in plan.train_models],
        '--device', plan.device, '--out-dir', out_dir, *plan.train_args
    ]
    code, _ = steps.run('train benchmark', command)
    # Written after each config: a run the budget stopped keeps its rows.
    path = osp.join(out_dir, 'train_benchmark.json')
    if not osp.isfile(path):
        return dict(code=code)
    shutil.copy(path, osp.join(out, 'train_benchmark.json'))
    with open(path) as f:
        return dict(json.load(f), code=code)


def _machine(runs: List[Tuple[str, Dict]], device: str) -> Dict:
    info = (runs[0][1].get('machine') or {}) if runs else {}
    gpu = info.get('gpu') or (torch.cuda.get_device_name(0)
                              if device == 'cuda' else None)
    return dict(
        gpu=gpu,
        cpu=info.get('cpu') or machine().cpu,
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version())


def _labels(plan: Plan) -> Dict[str, str]:
    return {
        osp.splitext(osp.basename(config))[0]: label
        for label, config in (*plan.candidates, *plan.baselines)
    }


def prepare(plan: Plan, work: str) -> Tuple[str, int]:
    """The toy data and every config the parts use; returns the toy
    config's path and its ReparamHook's index."""
    data_root = osp.join(work, 'toy_cityscapes')
    make_toy_cityscapes(data_root, overwrite=True, **plan.data)
    config = osp.join(work, 'toy_check.py')
    return config, write_configs(plan, data_root, config)


def train_and_test(plan: Plan, steps: Steps, config: str, hook_index: int,
                   work: str) -> Dict:
    trained = train(plan, steps, config, osp.join(work, 'train'))
    return dict(
        train=trained,
        tests=test(plan, steps, config, trained.get('checkpoint'), hook_index,
                   work))


def _guarded(errors: Dict, name: str, fn, *args):
    """``fn(*args)``, or None with the error noted: one part's crash must
    not cost the others, nor the report."""
    try:
        return fn(*args)
    except Exception as err:
        errors[name] = f'{type(err).__name__}: {err}'[:500]
        print(f'[gpu-check] {name} failed: {errors[name]}', flush=True)
        return None


def run_parts(plan: Plan, steps: Steps, work: str, out: str,
              pool_result: Optional[Dict]) -> Dict:
    """Every part of the plan. On CUDA one at a time (the timings have the
    GPU to themselves); on the CPU side by side (its timings mean
    nothing, and the dry run stays short)."""
    errors: Dict[str, str] = {}
    results: Dict = dict(part_errors=errors)
    if 'pool' in plan.parts:
        results['pool'] = pool_result or _guarded(errors, 'pool', pool, plan,
                                                  steps, work)
    if not {'train', 'bench', 'compiled', 'trainbench'} & set(plan.parts):
        return results
    prepared = _guarded(errors, 'prepare', prepare, plan, work)
    if prepared is None:
        return results
    config, hook_index = prepared
    parts = []
    if 'train' in plan.parts:
        parts.append(
            ('train', train_and_test, plan, steps, config, hook_index, work))
    if {'bench', 'compiled'} & set(plan.parts):
        parts.append(('bench', benchmark, plan, steps, work, out))
    if 'trainbench' in plan.parts:
        parts.append(('trainbench', train_benchmark, plan, steps, work, out))
    with ThreadPoolExecutor(1 if plan.cuda else len(parts) or 1) as pool_:
        futures = [(part[0], pool_.submit(_guarded, errors, *part))
                   for part in parts]
        done = {name: future.result() for name, future in futures}
    results.update(done.get('train') or {})
    runs, codes = done.get('bench') or ([], {})
    results.update(runs=runs, bench_codes=codes)
    if 'trainbench' in done:
        results['trainbench'] = done['trainbench'] or {}
    return results


def run_check(args,
              log_path: str,
              started: float,
              pool_result: Optional[Dict] = None) -> int:
    """Run the parts of ``args.device``'s plan and write the report; 1 if
    a check failed."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('--device cuda: torch sees no CUDA device; for the '
                          'dry run pass --device cpu')
    work = osp.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    plan = make_plan(args.device, work, args.parts)
    steps = Steps(log_path, started, args.budget)
    parts = run_parts(plan, steps, work, args.out, pool_result)
    runs = parts.pop('runs', [])
    results = dict(
        device=plan.device,
        parts=list(plan.parts),
        started_utc=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started)),
        wall_s=time.time() - started,
        machine=_machine(runs, plan.device),
        sizes=[f'{h}x{w}' for h, w in plan.sizes],
        candidates=[label for label, _ in plan.candidates],
        baselines=[label for label, _ in plan.baselines],
        toy_forms=list(plan.toy_forms),
        warmup=plan.warmup,
        runs=plan.runs,
        fp16=plan.cuda,
        skips=plan.skips,
        measurements=measurements_from_benchmarks(runs, _labels(plan)),
        **parts)
    return write_report(results, args.out, started)


def write_report(results: Dict, out: str, started: float) -> int:
    """Judge, write gpu_check.md/.json, print the checks; 1 if one
    failed."""
    checks = check_results(results)
    results['checks'] = checks
    report = render_report(results, checks)
    atomic_write(osp.join(out, 'gpu_check.md'), report)
    atomic_write(
        osp.join(out, 'gpu_check.json'),
        json.dumps(results, indent=2, default=str))
    # The report's tables, then each check on a line of its own.
    print(report.split('## Checks')[0].rstrip())
    for status, text in checks:
        print(f'{status} {text}')
    failed = sum(status == 'FAIL' for status, _ in checks)
    print(f'[gpu-check] {len(checks)} checks, {failed} failed; wrote '
          f'{osp.join(out, "gpu_check.md")} '
          f'({time.time() - started:.0f} s)')
    return 1 if failed else 0
