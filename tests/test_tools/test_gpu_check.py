"""The GPU check: its CPU dry run, install step and verdicts.

``tools/gpu_check.sh`` runs once on a GPU machine in a later session; here
its dry run (``--device cpu --skip-install``: tiny models, 32x64 images)
goes through every part with the real tools, its install step is checked
without a network, and the PASS/FAIL logic is fed measurements whose
verdicts are known.
"""
import ast
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STDLIB_ONLY = ('tools/gpu_check.py', 'tools/gpu/install.py',
               'tools/gpu/plan.py', 'tools/gpu/steps.py')


@pytest.fixture(scope='module')
def tool():
    """tools/gpu_check.py as a module (its install half is stdlib only);
    loading it puts tools/ on sys.path, so ``gpu.*`` imports as it does."""
    spec = importlib.util.spec_from_file_location('gpu_check_tool',
                                                  REPO / 'tools/gpu_check.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def install(tool):
    return importlib.import_module('gpu.install')


@pytest.fixture(scope='module')
def verdicts(tool):
    return importlib.import_module('gpu.verdicts')


def test_dry_run(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    proc = subprocess.run([
        'bash', 'tools/gpu_check.sh', '--device', 'cpu', '--skip-install',
        '--out',
        str(out), '--work-dir',
        str(work)
    ],
                          cwd=REPO,
                          env={
                              **os.environ, 'PYTHON': sys.executable
                          },
                          capture_output=True,
                          text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # What the CPU cannot do: one SKIP line each, and nothing failed.
    for part in ('--amp training', 'SyncBN in a distributed run',
                 'fp16 forms (reduced, reduced_cl', 'AMP training numbers'):
        assert sum(line.startswith('SKIP') and part in line
                   for line in lines) == 1, part
    for model in ('toy-tiny', 'R18-D8-tiny'):  # CUDA-only, by name
        assert any(
            line.startswith(f'SKIP {model} reduced_cl_lowres_graph')
            and 'needs a CUDA device' in line for line in lines)
    assert not [line for line in lines if line.startswith('FAIL')]
    results = json.loads((out / 'gpu_check.json').read_text())
    tests = results['tests']
    assert tests['fused']['miou'] is not None
    for name in ('unfused', 'deploy', 'form lowres'):
        assert tests[name]['miou'] == tests['fused']['miou'], name
    assert tests['fused']['fused_log'] and not tests['unfused']['fused_log']
    assert results['train']['deploy_final']
    measured = results['measurements']
    assert set(measured) == {'toy-tiny', 'R18-D8-tiny'}
    for model in measured.values():
        assert {
            form: cells['32x64']['status']
            for form, cells in model.items()
        } == dict(
            fused='ok',
            fused_cl='ok',
            lowres='ok',
            reduced_cl_lowres_graph='skipped')
    pool = results['pool']['rows']
    assert [row['bins'] for row in pool] == [1, 2, 3, 6] * 2
    assert all(row['equal'] for row in pool)
    rows = results['trainbench']['rows']
    assert [row['name'] for row in rows] == ['toy-tiny', 'R18-D8-tiny']
    for row in rows:
        assert row['train']['fp32']['s_per_iter'] > 0
        assert 'AMP training needs CUDA' in row['skips']['amp']
        assert row['inference']['fps'] > 0
    report = (out / 'gpu_check.md').read_text()
    for section in ('## PSP pooling', '## Forms on the trained toy model',
                    '## Each model in its best form', '## Every form',
                    '## Training'):
        assert section in report and section in proc.stdout, section
    assert '## Checks' in report
    # The new rows, printed: the forms and the training numbers.
    assert any(
        line.startswith('| toy-tiny | fused fp32 + low-res PSP (`lowres`)')
        for line in lines)
    assert any(
        line.startswith('| toy-tiny (dry run) | — | ')
        and '| skipped |' in line for line in lines)
    # Where the training step's time goes, for the model asked for.
    assert any(
        line.startswith('- toy-tiny fp32 step, profiled:') for line in lines)
    assert '- PASS mIoU fused' in report
    assert (out / 'bench_32x64.json').is_file()
    assert (out / 'train_benchmark.json').is_file()
    assert 'tools/train.py' in (out / 'gpu_check.log').read_text()


def test_only_a_part_still_writes_the_report(tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run([
        sys.executable, 'tools/gpu_check.py', '--device', 'cpu',
        '--skip-install', '--only', 'pool', '--out',
        str(out), '--work-dir',
        str(tmp_path / 'work')
    ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((out / 'gpu_check.json').read_text())
    assert results['parts'] == ['pool'] and 'tests' not in results
    assert '## PSP pooling' in (out / 'gpu_check.md').read_text()
    bad = subprocess.run([
        sys.executable, 'tools/gpu_check.py', '--device', 'cpu', '--only',
        'pool,nothing'
    ],
                         cwd=REPO,
                         capture_output=True,
                         text=True)
    assert bad.returncode == 2 and 'choose parts from' in bad.stderr


@pytest.mark.parametrize('path', STDLIB_ONLY)
def test_install_half_is_stdlib_only(path):
    """It must run on a machine without mmengine, mmcv or mmseg."""
    tree = ast.parse((REPO / path).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            top.add(node.module.split('.')[0])
    assert top and top - {'gpu'} <= set(sys.stdlib_module_names), top


def test_missing_wheelhouse_is_one_line(tool, install, tmp_path, monkeypatch,
                                        capsys):
    monkeypatch.setattr(install, 'pending_pins',
                        lambda pins, have: [('mmcv', '2.1.0')])
    code = tool.main([
        '--out',
        str(tmp_path / 'out'), '--wheelhouse',
        str(tmp_path / 'nowhere')
    ])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith('error: no wheelhouse at')
    assert 'bash tools/gpu_wheelhouse.sh' in err[0]
    assert 'carry' in err[0]


def _fake_wheelhouse(install, root: Path, skip=()):
    root.mkdir()
    shutil.copy(install.PINS_FILE, root)
    for name, version in install.read_pins():
        if name in skip:
            continue
        norm = name.replace('-', '_').lower()
        filename = (f'{norm}-{version}.tar.gz' if name == 'mmcv' else
                    f'{norm}-{version}-py3-none-any.whl')
        (root / filename).write_bytes(b'')
    return root


def test_wheelhouse_files(install, tmp_path):
    pins = install.read_pins()
    names = [name for name, _ in pins]
    assert {'mmcv', 'mmengine', 'mmsegmentation', 'setuptools'} <= set(names)
    files = install.wheelhouse_files(
        str(_fake_wheelhouse(install, tmp_path / 'full')), pins)
    assert set(files) == set(names)
    assert files['mmcv'].endswith('mmcv-2.1.0.tar.gz')
    # A download that did not finish: the missing pins are named.
    partial = _fake_wheelhouse(install, tmp_path / 'partial', skip=('yapf', ))
    with pytest.raises(install.InstallError, match=r'lacks yapf==[\d.]+: run'):
        install.wheelhouse_files(str(partial), pins)
    # One made for other pins.
    (partial / 'gpu_wheelhouse.txt').write_text('mmcv==2.0.0\n')
    with pytest.raises(install.InstallError, match='other pins'):
        install.wheelhouse_files(str(partial), pins)


def test_pending_pins(install):
    pins = [('mmengine', '0.10.7'), ('mmengine-does-not-exist', '1.0'),
            ('setuptools', '81.0.0')]
    assert install.pending_pins(pins, have_pkg_resources=True) == [pins[1]]
    assert install.pending_pins(
        pins, have_pkg_resources=False) == [pins[1], pins[2]]


def test_install_steps(install):
    files = {
        'setuptools': 'wh/setuptools.whl',
        'addict': 'wh/addict.whl',
        'mmcv': 'wh/mmcv-2.1.0.tar.gz'
    }
    pending = [('addict', '2.4.0'), ('mmcv', '2.1.0'),
               ('setuptools', '81.0.0')]
    (name, wheels, env), (_, build, build_env) = install.install_steps(
        'py', files, pending, jobs=16)
    assert name == 'wheels' and env == {}
    assert wheels[:3] == ['py', '-m', 'pip'] and '--no-index' in wheels
    assert '--no-deps' in wheels  # opencv-python must not be pulled in
    assert wheels[-2:] == ['wh/setuptools.whl', 'wh/addict.whl']
    assert build[-2:] == ['--no-build-isolation', 'wh/mmcv-2.1.0.tar.gz']
    # The ops are built for the CPU (the GPU hidden, CUDA not forced),
    # unoptimized: nothing runs them, mmseg only imports them.
    assert build_env == dict(
        MMCV_WITH_OPS='1',
        FORCE_CUDA='0',
        CUDA_VISIBLE_DEVICES='',
        MAX_JOBS='16',
        CFLAGS='-O0 -g0')
    (_, _, default_env), = install.install_steps(
        'py', files, [('mmcv', '2.1.0')], jobs=16, quick=False)
    assert 'CFLAGS' not in default_env
    assert install.install_steps('py', files, [], jobs=1) == []


def test_install_overlaps_the_build_and_retries_it(install, tmp_path,
                                                   monkeypatch):
    """``during_build`` runs while mmcv compiles; a failed quick build is
    built again with the default flags; then the imports are checked."""
    events = []
    monkeypatch.setattr(
        install, 'pending_pins', lambda pins, have: [('addict', '2.4.0'),
                                                     ('mmcv', '2.1.0')])
    monkeypatch.setattr(install, 'wheelhouse_files',
                        lambda wheelhouse, pins: dict(addict='a', mmcv='m'))
    codes = iter([0, 1, 0])

    def run_step(step, log_path, during=None):
        events.append((step[0], 'CFLAGS' in step[2]))
        if during is not None:
            during()
        return next(codes)

    monkeypatch.setattr(install, '_run_step', run_step)
    monkeypatch.setattr(install, 'import_check',
                        lambda log_path: events.append('imports'))
    install.install('wh', str(tmp_path / 'log'), lambda: events.append('pool'))
    assert events == [('wheels', False), ('mmcv build (CPU ops)', True),
                      'pool', ('mmcv build (CPU ops)', False), 'imports']


def test_wheelhouse_script_refuses_an_interpreter_without_pkg_resources(
        tmp_path):
    dest = tmp_path / 'wheelhouse'
    proc = subprocess.run(['bash', 'tools/gpu_wheelhouse.sh',
                           str(dest)],
                          cwd=REPO,
                          env={
                              **os.environ, 'PYTHON': 'false'
                          },
                          capture_output=True,
                          text=True)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: false has no '
                                               'pkg_resources')
    assert not dest.exists()


def test_cuda_plan_is_well_formed(tool, tmp_path, monkeypatch):
    """What the GPU run will do, checked here: its configs load, its forms
    exist and run on a CUDA machine, its commands name real files."""
    from mmseg_repvgg.config import load_config
    from mmseg_repvgg.deploy import availability, forms
    from mmseg_repvgg.deploy.availability import why_unavailable
    from mmseg_repvgg.deploy.forms import FORMS
    from mmseg_repvgg.deploy.machine import Machine
    check = importlib.import_module('gpu.check')
    plan_module = importlib.import_module('gpu.plan')
    parts = list(plan_module.DEFAULT_PARTS) + ['compiled']
    plan = plan_module.make_plan('cuda', str(tmp_path), parts)
    gpu = Machine(
        'cpu', 'x86_64', frozenset(), cuda=('H200', ), cuda_capability=(9, 0))
    for module in (forms, availability):
        monkeypatch.setattr(module, 'machine', lambda: gpu)
    forms = {f for per_size in plan.forms for f in per_size}
    forms |= set(plan.toy_forms) | {'compiled'}
    for name in sorted(forms):
        assert why_unavailable(FORMS[name], 'cuda') is None, name
    hook = check.write_configs(plan, str(tmp_path / 'data'),
                               str(tmp_path / 'toy.py'))
    toy = load_config(str(tmp_path / 'toy.py'))
    assert toy.custom_hooks[hook].type == 'ReparamHook'
    assert toy.model.backbone.norm_cfg.type == 'SyncBN'
    assert toy.train_cfg.max_epochs == plan_module.TOY_EPOCHS
    for _, config in (*plan.candidates, *plan.baselines, *plan.train_models):
        assert load_config(config if '::' in config else str(REPO / config))
    checkpoint = tmp_path / 'train' / 'epoch_12.pth'
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b'')
    names = [
        name for name, _, _ in check._test_jobs(plan, 'toy.py', str(
            checkpoint), hook, str(tmp_path))
    ]
    assert names == ['test fused', 'test unfused'] + [
        f'test form {form}' for form in plan.toy_forms
    ] + ['test cuda graphs']  # no deploy_final.pth in this folder
    jobs = check._bench_jobs(plan)
    assert [job[0] for job in jobs
            ] == ['1024x2048', '512x1024', 'compiled 1024x2048']
    assert (REPO / 'tests/test_deploy/test_cuda_graphs.py').is_file()
