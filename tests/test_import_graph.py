"""The package's imports flow one way: no cycle, and the deploy wing's
leaves (kernels/, backends/) are imported only by its pipeline.

The graph is read from the source (``ast``), function-local imports
included: a cycle hidden inside a function is still a cycle.
"""
import ast
import glob
import os.path as osp
import pkgutil
import subprocess
import sys
from typing import Dict, List, Set

import pytest

import mmseg_repvgg

PACKAGE = 'mmseg_repvgg'
ROOT = osp.dirname(osp.dirname(osp.abspath(mmseg_repvgg.__file__)))


def _modules() -> Dict[str, str]:
    """Module name -> file, for every module of the package."""
    found = {PACKAGE: mmseg_repvgg.__file__}
    for info in pkgutil.walk_packages(mmseg_repvgg.__path__, PACKAGE + '.'):
        spec = info.module_finder.find_spec(info.name)
        found[info.name] = spec.origin
    return found


def _resolve(module: str, is_package: bool, level: int, target: str) -> str:
    if not level:
        return target
    base = module.split('.')
    base = base[:len(base) - level + (1 if is_package else 0)]
    return '.'.join(base + ([target] if target else []))


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the package modules it imports (anywhere in its code)."""
    modules = _modules()
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        is_package = path.endswith('__init__.py')
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, is_package, node.level, node.module
                                  or '')
                # ``from pkg import sub`` imports the submodule pkg.sub.
                targets = [
                    f'{source}.{alias.name}'
                    if f'{source}.{alias.name}' in modules else source
                    for alias in node.names
                ]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as a list of modules, or []."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state:
                cycle = visit(child)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_find_cycle_finds_one():
    assert find_cycle({
        'a': {'b'},
        'b': {'c'},
        'c': {'a'}
    }) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) == []


def test_graph_sees_function_local_imports():
    graph = import_graph()
    # The test loop imports the deploy wing only inside its methods.
    assert f'{PACKAGE}.deploy.api' in graph[
        f'{PACKAGE}.engine.deploy_test_loop']


def test_no_import_cycle():
    assert find_cycle(import_graph()) == []


def test_library_never_imports_the_cli_layer():
    """The tools' layer (arguments, checks, noise filters) sits on top:
    models, checkpoint, datasets, engine, deploy, benchmark and apis never
    import it."""
    cli = f'{PACKAGE}.cli'
    offenders = sorted(f'{module} -> {edge}'
                       for module, edges in import_graph().items()
                       if not module.startswith(cli) for edge in edges
                       if edge == cli or edge.startswith(cli + '.'))
    assert offenders == []


@pytest.mark.parametrize('leaf', ['kernels', 'backends'])
def test_deploy_leaves_only_imported_by_the_pipeline(leaf):
    """Only the pipeline's steps (and the forms' machine check, and the
    ONNX check) reach into a leaf's modules; elsewhere (auto, the
    benchmark, apis) at most the leaf package's public names are used."""
    graph = import_graph()
    prefix = f'{PACKAGE}.deploy.{leaf}'
    pipeline = {
        f'{PACKAGE}.deploy.{step}'
        for step in ('forms', 'steps', 'onnx_export')
    }
    offenders = sorted(
        f'{module} -> {edge}' for module, edges in graph.items()
        for edge in edges if edge.startswith(prefix + '.')
        and module not in pipeline and not module.startswith(prefix))
    assert offenders == []


_LOADED = """
import sys
import torch
from mmengine.config import Config
from mmseg_repvgg.checkpoint import build_segmentor
from mmseg_repvgg.deploy import deploy_model
model = build_segmentor(Config.fromfile(sys.argv[1])).eval()
for form in sys.argv[2:]:
    deploy_model(model, form, input_shape=(1, 3, 32, 64))(
        torch.zeros(1, 3, 32, 64))
print(sorted(m for m in sys.modules
             if m.startswith('mmseg_repvgg.deploy.kernels')))
"""


@pytest.mark.parametrize('forms', [('fused', ), ('fused', 'onnxruntime')])
def test_plain_forms_load_no_kernel_module(forms, tiny_seg_cfg):
    """The fp32 and onnxruntime forms load none of the kernel layer."""
    result = subprocess.run(
        [sys.executable, '-c', _LOADED, tiny_seg_cfg.filename, *forms],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == '[]'


_TOOL = """
import runpy, sys
sys.argv, code = sys.argv[1:], 0
sys.path.insert(0, 'tools')
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit as exit_:
    code = exit_.code
print('exit', code, sorted(m for m in sys.modules
                           if m.startswith('mmseg_repvgg.deploy.kernels')))
"""


@pytest.mark.parametrize('tool', ['test', 'infer'])
def test_tools_with_the_fused_form_load_no_kernel_module(
        tool, tiny_seg_cfg, tiny_seg_checkpoint, tiny_seg_data, tmp_path):
    args = dict(
        test=['--work-dir', tmp_path / 'work'],
        infer=[tiny_seg_data / 'img' / '0.png', '--out-dir', tmp_path])[tool]
    result = subprocess.run([
        sys.executable, '-c', _TOOL, f'tools/{tool}.py', tiny_seg_cfg.filename,
        tiny_seg_checkpoint, '--deploy-form', 'fused', *args
    ],
                            capture_output=True,
                            text=True,
                            cwd=ROOT,
                            timeout=300)
    assert result.stdout.strip().splitlines()[-1] == 'exit 0 []', (
        result.stdout[-1000:] + result.stderr[-2000:])


#: Calls that read a clock.
_CLOCKS = {'perf_counter', 'time', 'monotonic', 'elapsed_time'}


def _loops_reading_a_clock(path: str) -> List[int]:
    """Lines of the loops in ``path`` whose body reads a clock."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for loop in ast.walk(tree):
        if not isinstance(loop, (ast.For, ast.While)):
            continue
        calls = [n for n in ast.walk(loop) if isinstance(n, ast.Call)]
        if any(
                getattr(call.func, 'attr', getattr(call.func, 'id', None)) in
                _CLOCKS for call in calls):
            found.append(loop.lineno)
    return found


def test_one_module_holds_a_timing_loop():
    """The benchmark, auto, Winograd tuning, the training benchmark and
    the tools all time through :mod:`mmseg_repvgg.deploy.timing`."""
    files = [
        path for base in ('mmseg_repvgg', 'tools') for path in glob.glob(
            osp.join(ROOT, base, '**', '*.py'), recursive=True)
    ]
    timing = {
        osp.relpath(path, ROOT): lines
        for path in files
        for lines in [_loops_reading_a_clock(path)] if lines
    }
    assert list(timing) == ['mmseg_repvgg/deploy/timing.py'], timing
