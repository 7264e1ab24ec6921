"""Winograd choices kept and reused: found in this machine's on-disk cache,
nothing is timed again; a cached choice that is wrong here is rejected.

The 'NNPACK' here is ``F.conv2d`` (``fake_nnpack``), so the logic runs on
any machine; each test has a cache folder of its own (conftest).
"""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_repvgg.deploy.kernels import guard, tuning
from mmseg_repvgg.deploy.kernels.guard import nnpack_problem
from mmseg_repvgg.deploy.kernels.winograd_convs import winograd_convs
from mmseg_repvgg.deploy.machine import machine

X = torch.randn(1, 8, 13, 19)


@pytest.fixture
def fake_nnpack(monkeypatch):
    """An 'NNPACK' made of F.conv2d (wrong by +1 with ``state['wrong']``),
    the child-process probe passing, the C entry point off."""
    state = dict(calls=0, wrong=False)

    def op(x, weight, bias, padding, stride=(1, 1)):
        state['calls'] += 1
        out = F.conv2d(x, weight, bias, padding=tuple(padding))
        return out + 1 if state['wrong'] else out

    guard.nnpack_problem.cache_clear()
    monkeypatch.setattr(guard, '_logged', {'c_api'})
    monkeypatch.setattr(guard, 'child_problem', lambda module, fn: None)
    monkeypatch.setattr(guard, 'c_api_problem', lambda: 'off in this test')
    monkeypatch.setattr(
        torch, '_nnpack_spatial_convolution', op, raising=False)
    monkeypatch.setattr(torch.backends.nnpack, 'is_available', lambda: True)
    monkeypatch.setattr(tuning, '_BUDGET_S', 0.002)
    monkeypatch.setattr(tuning, '_loaded', {})
    assert nnpack_problem() is None
    yield state
    guard.nnpack_problem.cache_clear()


@pytest.fixture
def timed(monkeypatch):
    """Shapes timed by :func:`.tuning.time_candidate` (one per candidate)."""
    calls = []
    time_candidate = tuning.time_candidate

    def counting(fn, x):
        calls.append(tuple(x.shape))
        return time_candidate(fn, x)

    monkeypatch.setattr(tuning, "time_candidate", counting)
    return calls


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2)).eval()


def _run(model):
    with torch.no_grad():
        return model(X)


def _choices(model):
    return {
        name: {
            shape: entry['choice']
            for shape, entry in module.choices.items()
        }
        for name, module in model.named_children()
        if hasattr(module, 'choices')
    }


def test_a_cached_choice_that_is_wrong_here_is_rejected(
        fake_nnpack, measurement_cache, monkeypatch, log_lines):
    fast, _ = winograd_convs(_model())
    tuning.store(fast[0], X.shape, dict(choice='winograd', ms={}))
    monkeypatch.setattr(tuning, '_loaded', {})  # a new process
    fake_nnpack['wrong'] = True
    again, _ = winograd_convs(_model())
    with torch.no_grad():
        out = again[0](X)
        ref = F.conv2d(X, again[0].weight, again[0].bias, padding=1)
    assert torch.allclose(out, ref)  # direct
    entry = again[0].choices[(1, 8, 13, 19)]
    assert entry['choice'] == 'direct' and 'winograd' in entry['rejected']
    assert entry['source'] == 'cache'
    assert len([m for m in log_lines if 'rejected' in m]) == 1


def test_cache_spares_a_second_process_the_timing(fake_nnpack, timed,
                                                  measurement_cache,
                                                  monkeypatch):
    model = _model()
    first, _ = winograd_convs(model)
    _run(first)
    assert len(timed) == 4
    data = json.loads((measurement_cache / tuning.CACHE_NAME).read_text())
    assert list(data) == [machine().fingerprint()]
    assert len(data[machine().fingerprint()]) == 2

    # A new process: nothing in memory, the file on disk.
    monkeypatch.setattr(tuning, '_loaded', {})
    timed.clear()
    second, _ = winograd_convs(model)
    _run(second)
    assert timed == []
    assert _choices(second) == _choices(first) != {}
    entry = second[0].choices[(1, 8, 13, 19)]
    assert entry['source'] == 'cache'
    assert entry['ms'] == first[0].choices[(1, 8, 13, 19)]['ms']

    # Another thread count is another machine: measured again.
    torch.set_num_threads(torch.get_num_threads() + 1)
    try:
        _run(winograd_convs(model)[0])
    finally:
        torch.set_num_threads(torch.get_num_threads() - 1)
    assert len(timed) == 4


def test_unreadable_cache_is_ignored_and_rewritten(fake_nnpack, timed,
                                                   measurement_cache,
                                                   log_lines):
    measurement_cache.mkdir(parents=True)
    path = measurement_cache / tuning.CACHE_NAME
    path.write_text('{not json')
    fast, _ = winograd_convs(_model())
    _run(fast)
    assert len(timed) == 4  # measured, not read
    assert len([m for m in log_lines if 'unreadable cache' in m]) == 1
    assert len(json.loads(path.read_text())[machine().fingerprint()]) == 2


def test_no_cache_reads_and_writes_nothing(fake_nnpack, measurement_cache):
    _run(winograd_convs(_model(), cache=False)[0])
    assert not measurement_cache.exists()
