"""The compatibility patches: each test here fails without its patch."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import METRICS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmseg_repvgg  # noqa: F401  (applies the patches)
from mmseg_repvgg.compat import MMENGINE_SAFE_GLOBALS, safe_torch_load
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


def test_runner_checkpoint_needs_the_allow_list(runner_checkpoint):
    # What mmengine saves is not loadable by plain weights_only loading:
    # this is the failure the patch exists for.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_checkpoint, weights_only=True)
    checkpoint = safe_torch_load(runner_checkpoint)
    assert checkpoint['meta']['iter'] == 2
    assert 'message_hub' in checkpoint and 'optimizer' in checkpoint


def test_runner_resumes_from_its_checkpoint(runner_checkpoint, tmp_path):
    runner = _runner(
        tmp_path,
        resume=True,
        load_from=str(runner_checkpoint),
        train_cfg=dict(by_epoch=False, max_iters=3, val_interval=1))
    runner.train()
    assert runner.iter == 3
    saved = safe_torch_load(runner_checkpoint)
    buffers = saved['message_hub']['log_scalars']
    assert runner.message_hub.get_scalar(
        'train/loss')._count_history[:2].tolist(
        ) == buffers['train/loss']._count_history.tolist()


def test_runner_loads_checkpoint_for_test(runner_checkpoint, tmp_path):
    runner = _runner(tmp_path, load_from=str(runner_checkpoint))
    metrics = runner.test()
    assert metrics['mse'] >= 0
    expected = safe_torch_load(runner_checkpoint)['state_dict']
    for name, value in runner.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


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
        load_checkpoint(nn.Linear(2, 1), str(path))
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


def test_cityscapes_evaluation_runs_on_numpy2():
    from cityscapesscripts.evaluation import \
        evalPixelLevelSemanticLabeling as cs_eval
    gt = np.array([[7, 8], [0, 26]])
    # The helper that numpy 2 broke: category masks use np.in1d.
    mask = cs_eval.np.in1d(gt, [7, 8], invert=True).reshape(gt.shape)
    assert mask.tolist() == [[False, False], [True, True]]


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
