"""The guard of the private torch routes: each route's check runs in a
child process first, and a crash, a timeout or a non-zero exit there makes
the route fall back with one log line, never touching it in this process.
"""
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_repvgg.deploy.kernels import guard, nnpack, nnpack_op
from mmseg_repvgg.deploy.kernels.winograd import WinogradConv2d

#: What a child does instead of its check, and what the guard then says.
FAILURES = {
    'crash': ('import os; os.abort()', 'crashed a child process (SIGABRT)'),
    'exit': ('raise SystemExit(3)', 'exited with status 3'),
    'hang': ('import time; time.sleep(60)', 'did not finish within 1 s'),
}


@pytest.fixture
def failing_child(monkeypatch, request):
    """Children that fail as ``request.param`` says, uncached; the routes'
    cached results and logged lines are forgotten before and after."""
    code, _ = FAILURES[request.param]
    monkeypatch.setattr(guard, '_child_command',
                        lambda module, fn: [sys.executable, '-c', code])
    monkeypatch.setattr(guard, 'child_problem',
                        guard.child_problem.__wrapped__)
    monkeypatch.setattr(guard, 'PROBE_TIMEOUT_S', 1)
    monkeypatch.setattr(guard, '_logged', set())
    # Kept now: a test may replace them in the module.
    routes = (guard.nnpack_problem, guard.c_api_problem, guard.int8_problem)
    for route in routes:
        route.cache_clear()
    yield FAILURES[request.param][1]
    for route in routes:
        route.cache_clear()


def test_the_child_agrees_with_this_process():
    # Cached after the first use in this session: no new child here.
    assert (guard.child_problem(
        'nnpack_op', 'check_torch_op') == nnpack_op.check_torch_op())
    assert guard.torch_checked() == torch.__version__.startswith('2.13')


@pytest.mark.skipif(
    guard.nnpack_problem() is not None, reason='torch has no usable NNPACK')
@pytest.mark.parametrize('failing_child', list(FAILURES), indirect=True)
def test_failed_c_api_check_falls_back_to_torch_op(failing_child, monkeypatch,
                                                   log_lines):
    monkeypatch.setattr(guard, 'nnpack_problem', lambda: None)
    touched = []
    monkeypatch.setattr(nnpack, '_api', lambda: touched.append('_api'))
    monkeypatch.setattr(nnpack, 'check_c_api', lambda: touched.append('check'))
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    fast = WinogradConv2d(conv, 'winograd', cache=False)
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        outs = [fast(x), fast(x)]
        ref = conv(x)
    for out in outs:
        assert ((out - ref).norm() / ref.norm()) < 1e-4
    assert touched == [] and fast._transform is None
    lines = [m for m in log_lines if 'not usable' in m]
    assert len(lines) == 1
    assert "C entry point" in lines[0] and failing_child in lines[0]


@pytest.mark.parametrize('failing_child', ['crash'], indirect=True)
def test_failed_torch_op_check_runs_direct(failing_child, monkeypatch,
                                           log_lines):
    calls = []

    def op(*args):
        calls.append(args)
        return F.conv2d(args[0], args[1], args[2], padding=args[3])

    monkeypatch.setattr(torch, '_nnpack_spatial_convolution', op)
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    fast = WinogradConv2d(conv, cache=False)
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        assert torch.equal(fast(x), conv(x))
    assert calls == [] and fast.choices == {}
    lines = [m for m in log_lines if 'not usable' in m]
    assert len(lines) == 1 and lines[0].startswith('NNPACK is not usable')
    assert failing_child in lines[0] and 'run direct' in lines[0]


def test_unchecked_torch_is_probed_and_says_so(monkeypatch, log_lines):
    monkeypatch.setattr(torch, '__version__', '9.9.0+cpu')
    monkeypatch.setattr(guard, '_logged', set())
    monkeypatch.setattr(guard, 'child_problem', lambda module, fn: None)
    assert not guard.torch_checked()
    problem = nnpack_op.check_torch_op()
    assert guard.route_problem('nnpack_op', 'check_torch_op') == problem
    assert guard.route_problem('nnpack_op', 'check_torch_op') == problem
    lines = [m for m in log_lines if 'checked on torch 2.13' in m]
    assert len(lines) == 1 and 'torch 9.9.0+cpu' in lines[0]
