"""The GPU path in one prepared run (issue 19): the steps after the install.

``tools/gpu_check.py`` installs the packages, then calls :func:`run_check`,
which runs the project's own tools as a user would, each in a subprocess
with its output appended to ``gpu_check.log``:

1. the toy Cityscapes (:func:`~mmseg_repvgg.datasets.make_toy_cityscapes`);
2. training of ``configs/pspnet_repvgg_toy_cityscapes.py`` for one epoch:
   on CUDA ``tools/dist_train.sh CONFIG 1 --amp`` (one process, so the
   Runner is distributed and keeps SyncBN, here set on every norm layer);
3. ``tools/test.py`` of its checkpoint fused (the ReparamHook), unfused
   (``fuse_before_test=False``) and of ``deploy_final.pth``;
4. ``tools/benchmark.py`` at each size, then the torch.compile forms of
   the models the targets compare, while the time budget lasts;
5. ``gpu_check.md`` and ``gpu_check.json`` (:mod:`.gpu_report`).

On the CPU (``--device cpu``) the same steps run tiny: a narrow model,
32x64 images, one small baseline; AMP, SyncBN and fp16 are skipped with
one line each.
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import DictAction

from ..checkpoint import safe_torch_load
from ..cli.config import load_config
from ..datasets import make_toy_cityscapes
from ..errors import ConfigError
from .gpu_plan import COMPILED_MODELS, TOY_CONFIG, Plan, make_plan
from .gpu_report import (check_results, measurements_from_benchmarks,
                         render_report)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class Steps:
    """Runs commands in the repo root, logged, within a time budget."""

    def __init__(self, log_path: str, started: float, budget: Optional[float]):
        self.log_path = log_path
        self.deadline = None if not budget else started + budget
        self._lock = threading.Lock()

    def run(self,
            name: str,
            command: List[str],
            env: Optional[Dict[str, str]] = None,
            reserve: float = 20.0) -> Tuple[Optional[int], str]:
        """``(exit code, output)``; the code is None when the budget had
        no time left for it or it ran out (the process group is killed)."""
        return self.run_together([(name, command, env)], reserve)[0]

    def run_together(self,
                     jobs: List[Tuple[str, List[str], Optional[Dict]]],
                     reserve: float = 20.0):
        """Run ``(name, command, env)`` jobs at the same time; returns
        ``(exit code, output)`` of each, as :meth:`run`."""
        end = None if self.deadline is None else self.deadline - reserve
        if end is not None and end - time.time() < 10:
            for name, _, _ in jobs:
                print(f'[gpu-check] {name}: no time left in the budget')
            return [(None, '')] * len(jobs)
        start = time.time()
        started = []
        for name, command, env in jobs:
            out = tempfile.TemporaryFile('w+')
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    **(env or {})
                },
                start_new_session=True)
            started.append((name, command, proc, out))
        results = []
        for name, command, proc, out in started:
            try:
                code = proc.wait(None if end is
                                 None else max(1.0, end - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
            out.seek(0)
            output = out.read()
            out.close()
            with self._lock, open(self.log_path, 'a') as log:
                log.write(f'\n===== {name}: {" ".join(command)}\n{output}')
            status = 'ran out of time' if code is None else f'exit {code}'
            print(
                f'[gpu-check] {name}: {status} '
                f'({time.time() - start:.0f} s)',
                flush=True)
            if code != 0:
                print('\n'.join(output.splitlines()[-15:]), flush=True)
            results.append((code, output))
        return results


def _cfg_options(options: List[str]) -> Dict:
    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=DictAction)
    return parser.parse_args(['--o', *options]).o


def write_config(plan: Plan, data_root: str, path: str) -> int:
    """Write the toy config with the plan's options; returns the index of
    its ReparamHook in ``custom_hooks``."""
    options = plan.options + [
        f'{split}_dataloader.dataset.data_root={data_root}'
        for split in ('train', 'val', 'test')
    ]
    cfg = load_config(osp.join(REPO_ROOT, TOY_CONFIG), _cfg_options(options))
    cfg.dump(path)
    hooks = [h.get('type') for h in cfg.get('custom_hooks', [])]
    if 'ReparamHook' not in hooks:
        raise ConfigError(f'{TOY_CONFIG} has no ReparamHook in custom_hooks')
    return hooks.index('ReparamHook')


def train(plan: Plan, steps: Steps, config: str, work: str) -> Dict:
    python = sys.executable
    if plan.cuda:
        command = [
            'bash', 'tools/dist_train.sh', config, '1', '--amp', '--work-dir',
            work
        ]
    else:
        command = [python, 'tools/train.py', config, '--work-dir', work]
    code, output = steps.run('train', command, dict(PYTHON=python))
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


def test(plan: Plan, steps: Steps, config: str, checkpoint: Optional[str],
         hook_index: int, work: str) -> Dict:
    """mIoU of the checkpoint fused, unfused, and of deploy_final.pth."""
    # True fp32: TF32 rounding would flip labels of no concern here.
    env = dict(NVIDIA_TF32_OVERRIDE='0')
    runs = dict(
        fused=(checkpoint, []),
        unfused=(checkpoint, [
            '--cfg-options', f'custom_hooks.{hook_index}.fuse_before_test='
            'False'
        ]),
        deploy=(osp.join(osp.dirname(checkpoint or ''),
                         'deploy_final.pth'), []))
    results, jobs = {}, []
    for name, (path, extra) in runs.items():
        if not path or not osp.isfile(path):
            results[name] = dict(code=None, miou=None, note='no checkpoint')
            continue
        command = [
            sys.executable, 'tools/test.py', config, path, '--work-dir',
            osp.join(work, f'test_{name}')
        ] + extra
        jobs.append((f'test {name}', command, env))
    # Independent: run side by side (the toy val set is tiny).
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


def benchmark(plan: Plan, steps: Steps, work: str, out: str):
    """Run tools/benchmark.py per size (then the compiled forms); returns
    ``(size, results)`` runs and the exit code of each."""
    runs, codes = [], {}
    jobs = [(f'{h}x{w}', (h, w), plan.candidates, plan.baselines, plan.forms)
            for h, w in plan.sizes]
    if plan.compiled:
        h, w = plan.sizes[0]
        jobs.append((f'compiled {h}x{w}', (h, w),
                     [m for m in plan.candidates if m[0] in COMPILED_MODELS],
                     [m for m in plan.baselines
                      if m[0] in COMPILED_MODELS], ['fused', 'compiled']))
    for name, (h, w), candidates, baselines, forms in jobs:
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
        code, _ = steps.run(f'benchmark {name}', command,
                            dict(NVIDIA_TF32_OVERRIDE='0'))
        codes[name] = code
        path = osp.join(bench_dir, 'benchmark.json')
        if code == 0 and osp.isfile(path):
            shutil.copy(path, osp.join(out, f'bench_{key}.json'))
            with open(path) as f:
                runs.append((f'{h}x{w}', json.load(f)))
    return runs, codes


def _machine(runs: List[Tuple[str, Dict]]) -> Dict:
    if not runs:
        return {}
    info = runs[0][1].get('machine') or {}
    return dict(
        gpu=info.get('gpu'),
        cpu=info.get('cpu'),
        torch=(info.get('versions') or {}).get('torch'),
        cuda=info.get('cuda'),
        cudnn=info.get('cudnn'))


def run_check(args, log_path: str, started: float) -> int:
    """Run every step of ``args.device``'s plan; 1 if a check failed."""
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('--device cuda: torch sees no CUDA device; for the '
                          'dry run pass --device cpu')
    work = osp.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    plan = make_plan(args.device, work, not args.no_compiled)
    steps = Steps(log_path, started, args.budget)
    data_root = osp.join(work, 'toy_cityscapes')
    make_toy_cityscapes(data_root, overwrite=True, **plan.data)
    config = osp.join(work, 'toy_check.py')
    hook_index = write_config(plan, data_root, config)
    for path, source, options in plan.configs:
        load_config(source, _cfg_options(options)).dump(path)
    trained = train(plan, steps, config, osp.join(work, 'train'))
    # On CUDA the benchmark has the GPU to itself; the dry run's CPU
    # timings mean nothing, so it overlaps the tests there.
    with ThreadPoolExecutor(1) as pool:
        bench = None if plan.cuda else pool.submit(benchmark, plan, steps,
                                                   work, args.out)
        tests = test(plan, steps, config, trained.get('checkpoint'),
                     hook_index, work)
        runs, codes = bench.result() if bench else benchmark(
            plan, steps, work, args.out)
    labels = {
        osp.splitext(osp.basename(config))[0]: label
        for label, config in (*plan.candidates, *plan.baselines)
    }
    results = dict(
        device=plan.device,
        started_utc=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started)),
        wall_s=time.time() - started,
        machine=_machine(runs),
        sizes=[f'{h}x{w}' for h, w in plan.sizes],
        candidates=[label for label, _ in plan.candidates],
        baselines=[label for label, _ in plan.baselines],
        warmup=plan.warmup,
        runs=plan.runs,
        fp16=plan.cuda,
        skips=plan.skips,
        train=trained,
        tests=tests,
        bench_codes=codes,
        measurements=measurements_from_benchmarks(runs, labels))
    checks = check_results(results)
    results['checks'] = checks
    with open(osp.join(args.out, 'gpu_check.md'), 'w') as f:
        f.write(render_report(results, checks))
    with open(osp.join(args.out, 'gpu_check.json'), 'w') as f:
        json.dump(results, f, indent=2, default=str)
    for status, text in checks:
        print(f'{status} {text}')
    failed = sum(status == 'FAIL' for status, _ in checks)
    print(f'[gpu-check] {len(checks)} checks, {failed} failed; wrote '
          f'{osp.join(args.out, "gpu_check.md")} '
          f'({time.time() - started:.0f} s)')
    return 1 if failed else 0
