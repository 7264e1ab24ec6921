"""Safe loading of mmengine's checkpoints, and an import that patches nothing.

The ``safe://`` loader scheme is what lets mmengine's Runner resume, load
and test its own checkpoints on torch >= 2.6; the first test shows that
mmengine's local loader fails on them.
"""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import METRICS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmseg_repvgg.checkpoint.safe_load import (MMENGINE_SAFE_GLOBALS,
                                               SAFE_SCHEME, needs_safe_loading,
                                               route_checkpoint_loading,
                                               safe_torch_load)
from mmseg_repvgg.errors import CheckpointError


class _Points(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        gen = torch.Generator().manual_seed(idx)
        return dict(
            inputs=torch.randn(2, generator=gen),
            target=torch.tensor(float(idx % 2)))


class _TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, target, mode='tensor'):
        pred = self.linear(torch.stack(inputs)).squeeze(1)
        if mode == 'loss':
            return dict(loss=((pred - torch.stack(target))**2).mean())
        return [dict(pred=p, target=t) for p, t in zip(pred, target)]


@METRICS.register_module(force=True)
class _SquaredError(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results += [(s['pred'] - s['target']).item()**2
                         for s in data_samples]

    def compute_metrics(self, results):
        # A numpy scalar, as real metrics produce: it lands in message_hub.
        return dict(mse=np.float64(np.mean(results)))


def _runner(work_dir, **kwargs):
    loader = dict(
        dataset=_Points(),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=4,
        num_workers=0)
    cfg = dict(
        model=_TinyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=2, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        val_dataloader=loader,
        val_cfg=dict(),
        val_evaluator=dict(type='_SquaredError'),
        test_dataloader=loader,
        test_cfg=dict(),
        test_evaluator=dict(type='_SquaredError'),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1,
                            by_epoch=False)),
        randomness=dict(seed=0),
        experiment_name=f'exp_{work_dir.name}',
    )
    cfg.update(kwargs)
    return Runner(**cfg)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('runner')
    _runner(work_dir).train()
    return work_dir / 'iter_2.pth'


def test_runner_checkpoint_needs_the_allow_list(runner_checkpoint, tmp_path):
    # What mmengine saves is not loadable by plain weights_only loading, nor
    # by mmengine's own local loader: the failure the scheme exists for.
    assert needs_safe_loading()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_checkpoint, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        _runner(tmp_path, load_from=str(runner_checkpoint)).test()
    checkpoint = safe_torch_load(runner_checkpoint)
    assert checkpoint['meta']['iter'] == 2
    assert 'message_hub' in checkpoint and 'optimizer' in checkpoint


def test_runner_resumes_from_its_checkpoint(runner_checkpoint, tmp_path):
    runner = _runner(
        tmp_path,
        resume=True,
        load_from=SAFE_SCHEME + str(runner_checkpoint),
        train_cfg=dict(by_epoch=False, max_iters=3, val_interval=1))
    runner.train()
    assert runner.iter == 3
    saved = safe_torch_load(runner_checkpoint)
    buffers = saved['message_hub']['log_scalars']
    assert runner.message_hub.get_scalar(
        'train/loss')._count_history[:2].tolist(
        ) == buffers['train/loss']._count_history.tolist()


def test_runner_loads_checkpoint_for_test(runner_checkpoint, tmp_path):
    runner = _runner(tmp_path, load_from=SAFE_SCHEME + str(runner_checkpoint))
    metrics = runner.test()
    assert metrics['mse'] >= 0
    expected = safe_torch_load(runner_checkpoint)['state_dict']
    for name, value in runner.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_route_checkpoint_loading(runner_checkpoint, tmp_path):
    work_dir = runner_checkpoint.parent
    cfg = Config(dict(work_dir=str(work_dir), resume=True, load_from=None))
    # --resume without a path: the latest checkpoint, as the Runner picks.
    assert route_checkpoint_loading(
        cfg) == SAFE_SCHEME + str(runner_checkpoint)
    cfg = Config(dict(work_dir=str(tmp_path), load_from='x/epoch_1.pth'))
    route_checkpoint_loading(cfg)
    assert cfg.load_from == 'safe://x/epoch_1.pth'
    for untouched in ('https://host/x.pth', None):
        cfg = Config(dict(work_dir=str(tmp_path), load_from=untouched))
        assert route_checkpoint_loading(cfg) is None
        assert cfg.load_from == untouched


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_unlisted_types_are_refused_without_running_them(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match='refused to load'):
        safe_torch_load(path)
    from mmengine.runner import load_checkpoint
    with pytest.raises(CheckpointError, match='evil.pth'):
        load_checkpoint(nn.Linear(2, 1), SAFE_SCHEME + str(path))
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(runner_checkpoint, tmp_path):
    path = tmp_path / 'cut.pth'
    path.write_bytes(runner_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        safe_torch_load(path)
    with pytest.raises(CheckpointError, match='not found'):
        safe_torch_load(tmp_path / 'missing.pth')


def test_allow_list_is_explicit():
    names = {getattr(g, '__name__', None) for g in MMENGINE_SAFE_GLOBALS}
    assert 'HistoryBuffer' in names and 'ndarray' in names
    assert 'eval' not in names and 'open' not in names


def test_cityscapes_evaluation_gets_in1d_only_while_it_runs():
    from cityscapesscripts.evaluation import \
        evalPixelLevelSemanticLabeling as cs_eval

    from mmseg_repvgg.evaluation.cityscapes_metric import \
        numpy1_for_cityscapes_eval
    gt = np.array([[7, 8], [0, 26]])
    assert cs_eval.np is np
    with numpy1_for_cityscapes_eval():
        # The helper that numpy 2 broke: category masks use np.in1d.
        mask = cs_eval.np.in1d(gt, [7, 8], invert=True).reshape(gt.shape)
    assert mask.tolist() == [[False, False], [True, True]]
    assert cs_eval.np is np  # numpy itself was never touched


class _GetattrPayload:
    """Reaches beyond HistoryBuffer's statistics through getattr."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': _GetattrPayload()}, path)
    with pytest.raises(CheckpointError, match='getattr.pth: refused'):
        safe_torch_load(path)


_SNAPSHOT = """
import json, sys
import numpy, torch
import mmengine.runner.checkpoint as ckpt
from mmengine.fileio import backends
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook, EMAHook
from mmengine.runner import Runner

def snapshot():
    objs = dict(
        torch_load=torch.load, put=LocalBackend.put,
        put_text=LocalBackend.put_text,
        save_with_step=CheckpointHook._save_checkpoint_with_step,
        safe_globals=tuple(map(str, torch.serialization.get_safe_globals())))
    objs.update({f'scheme {k}': v for k, v in ckpt.CheckpointLoader._schemes.items()})
    objs.update({f'backend {k}': v for k, v in backends.registry_utils.backends.items()})
    for cls in (Runner, CheckpointHook, EMAHook, LocalBackend):
        objs.update({f'{cls.__name__}.{k}': v for k, v in vars(cls).items()})
    objs.update({f'numpy.{k}': v for k, v in vars(numpy).items()})
    return {k: repr(v) if k == 'safe_globals' else id(v) for k, v in objs.items()}

before = snapshot()
import mmseg_repvgg  # noqa
after = snapshot()
print(json.dumps(dict(
    changed=sorted(k for k in before if before[k] != after.get(k)),
    added=sorted(k for k in set(after) - set(before)
                 if not k.startswith('numpy.')),
    local=ckpt.CheckpointLoader._schemes[''] is ckpt.load_from_local)))
"""


def test_import_registers_and_patches_nothing():
    """After ``import mmseg_repvgg`` mmengine's functions are mmengine's."""
    out = subprocess.run([sys.executable, '-c', _SNAPSHOT],
                         capture_output=True,
                         text=True,
                         check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result['changed'] == []
    assert result['added'] == ['backend local_atomic', 'scheme safe://']
    assert result['local']  # the local scheme is mmengine's load_from_local
