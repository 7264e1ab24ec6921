"""Winograd choices kept and reused: saved with a model and given back, or
found in this machine's on-disk cache; either way nothing is timed again.

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
from mmseg_repvgg.deploy.kernels.winograd_convs import (apply_choices,
                                                        tuned_choices,
                                                        winograd_convs)
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
    """Shapes timed by :func:`.tuning.time_calls` (one per candidate)."""
    calls = []
    time_calls = tuning.time_calls

    def counting(fn, x):
        calls.append(tuple(x.shape))
        return time_calls(fn, x)

    monkeypatch.setattr(tuning, 'time_calls', counting)
    return calls


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2)).eval()


def _run(model):
    with torch.no_grad():
        return model(X)


def test_saved_choices_run_without_timing(fake_nnpack, timed):
    model = _model()
    fast, _ = winograd_convs(model, cache=False)
    _run(fast)
    assert len(timed) == 4  # two layers, two candidates each
    saved = tuned_choices(fast)
    assert set(saved) == {'0', '2'}
    assert set(saved['0']) == {'1x8x13x19'}
    assert json.loads(json.dumps(saved)) == saved  # JSON-able as it is

    # Another choice than the measured one, given back: used, not timed.
    forced = {'0': {'1x8x13x19': 'winograd'}, '2': {'1x8x13x19': 'direct'}}
    timed.clear()
    again, _ = winograd_convs(model, choices=forced, cache=False)
    assert tuned_choices(again) == forced  # before any forward, too
    calls = fake_nnpack['calls']
    out = _run(again)
    assert timed == []
    # Layer 0 ran Winograd (and direct once, as its check), layer 2 direct.
    assert fake_nnpack['calls'] == calls + 1
    assert again[0].choices[(1, 8, 13, 19)]['source'] == 'saved'
    assert tuned_choices(again) == forced
    assert ((out - _run(model)).norm() / out.norm()) < 1e-6


def test_apply_choices_refuses_what_does_not_fit(fake_nnpack):
    fast, _ = winograd_convs(_model(), cache=False)
    with pytest.raises(ValueError, match="name '1'"):
        apply_choices(fast, {'1': {'1x8x13x19': 'direct'}})
    with pytest.raises(ValueError, match='candidates'):
        apply_choices(fast, {'2': {'1x8x13x19': 'winograd'}})  # dilated
    assert apply_choices(fast, {'2': {'1x8x9x9': 'winograd_s2b'}}) == 1


def test_a_saved_choice_that_is_wrong_here_is_rejected(fake_nnpack, log_lines):
    fake_nnpack['wrong'] = True
    fast, _ = winograd_convs(
        _model(), choices={'0': {
            '1x8x13x19': 'winograd'
        }}, cache=False)
    with torch.no_grad():
        out = fast[0](X)
        ref = F.conv2d(X, fast[0].weight, fast[0].bias, padding=1)
    assert torch.allclose(out, ref)  # direct
    entry = fast[0].choices[(1, 8, 13, 19)]
    assert entry['choice'] == 'direct' and 'winograd' in entry['rejected']
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
    assert tuned_choices(second) == tuned_choices(first)
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
