"""tools/demo.py and its steps (tools/demo_steps.py): the report is built
from the scores ``runner.test()`` returns and the classes of the dataset's
metainfo.

The pieces run on hand-made inputs; one short demo (1 epoch of 2
iterations of a tiny model on 32x64 toy images) runs in-process end to
end, and the tool's ``main`` is checked with the run replaced.
"""
import importlib.util
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmseg.datasets import CityscapesDataset
from mmseg.registry import METRICS

from mmseg_repvgg.errors import ConfigError, DatasetError
from mmseg_repvgg.evaluation import PerClassIoUMetric

REPO = Path(__file__).resolve().parents[2]


def load_tool(name: str, as_name: str):
    spec = importlib.util.spec_from_file_location(
        as_name, REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# tools/demo.py imports its steps by name, as a script beside them does.
demo = sys.modules.setdefault('demo_steps',
                              load_tool('demo_steps', 'demo_steps'))


def load_demo_tool():
    return load_tool('demo', 'tool_demo')


def test_config_options():
    options = demo.config_options('data/x', epochs=3)
    assert options['param_scheduler.0.end'] == 3
    assert options['train_cfg.max_epochs'] == 3
    assert options['test_dataloader.dataset.data_root'] == 'data/x'
    assert not any('epochs' in key for key in demo.config_options('data/x'))


def test_per_class_metric_returns_what_iou_metric_only_logs():
    # Registered by `import mmseg_repvgg`, so configs can name it.
    assert METRICS.get('PerClassIoUMetric') is PerClassIoUMetric
    metric = PerClassIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    pred = torch.tensor([[0, 0, 1], [1, 1, 1]])
    label = torch.tensor([[0, 1, 1], [1, 255, 1]])
    results = [metric.intersect_and_union(pred, label, 3, 255)]
    metrics = metric.compute_metrics(results)
    # a: 1 of 2 pixels in the union; b: 3 of 4; c absent from both.
    assert metrics['IoU.a'] == 50.0 and metrics['IoU.b'] == 75.0
    assert math.isnan(metrics['IoU.c'])
    assert metrics['Acc.a'] == 100.0 and metrics['Acc.b'] == 75.0
    # mmseg's own summary, unchanged beside them.
    assert metrics['mIoU'] == 62.5 and metrics['aAcc'] == 80.0
    assert metrics['mAcc'] == 87.5


def fake_result(**kwargs) -> demo.DemoResult:
    metrics = {
        'aAcc': 91.5,
        'mIoU': 40.25,
        'mAcc': 55.5,
        'IoU.road': 80.5,
        'Acc.road': 90.0,
        'IoU.sky': 0.0,
        'Acc.sky': 21.0,
    }
    fields = dict(
        metrics=metrics,
        classes=('road', 'sky'),
        baseline_miou=12.34,
        train_miou=40.25,
        checkpoint='w/epoch_1.pth',
        work_dir='w',
        images=['w/test/show/vis_data/vis_image/a.png'],
        log_dirs=('w/1', 'w/test/2'))
    fields.update(kwargs)
    return demo.DemoResult(**fields)


def test_report_is_built_from_the_metrics_and_the_classes():
    report = demo.format_report(fake_result())
    lines = report.splitlines()
    assert lines[1].split() == ['class', 'IoU', 'Acc']
    assert lines[2].split() == ['road', '80.50', '90.00']
    assert lines[3].split() == ['sky', '0.00', '21.00']
    assert ('mIoU 40.25 (aAcc 91.50, mAcc 55.50); predicting the most '
            'frequent class everywhere scores 12.34 mIoU') in report
    assert 'the fused model is the same function' in report
    assert 'w/deploy_final.pth' in report
    assert '1 images' in report and 'logs: w/1, w/test/2' in report
    # A different validation score is shown without the claim.
    other = demo.format_report(fake_result(train_miou=39.0))
    assert '39.00 mIoU' in other and 'same function' not in other
    # Classes the metrics do not have are an error, not a blank row.
    with pytest.raises(KeyError, match='IoU.car'):
        demo.format_report(fake_result(classes=('road', 'car')))


def test_live_gist_passes_progress_and_problems_only(capsys):
    gist = demo.LiveGist(sys.stdout)
    gist.write('12/01 10:00:00 - mmengine - INFO - Config:\nmodel = dict(\n')
    gist.write('12/01 10:00:01 - mmengine - INFO - Epoch(train) [1][2/2] ')
    gist.write('lr: 0.1\n12/01 - mmengine - WARNING - FileClient will be '
               'deprecated\n12/01 - mmengine - ERROR - disk full\n')
    gist.write("    type='ReparamHook',\n")
    assert capsys.readouterr().out.splitlines() == [
        '12/01 10:00:01 - mmengine - INFO - Epoch(train) [1][2/2] lr: 0.1',
        '12/01 - mmengine - ERROR - disk full'
    ]


def test_constant_prediction_miou(toy_cityscapes_tiny, tmp_path):
    val = toy_cityscapes_tiny / 'gtFine' / 'val'
    labels = sorted(str(p) for p in val.rglob('*labelTrainIds.png'))
    assert labels
    share = demo.constant_prediction_miou(labels, 19)
    assert 0 < share < 50  # one class's pixel share over the classes seen
    empty = tmp_path / 'empty.png'
    cv2.imwrite(str(empty), np.full((4, 4), 255, np.uint8))
    with pytest.raises(DatasetError, match='no labelled pixels'):
        demo.constant_prediction_miou([str(empty)], 19)


def test_test_needs_an_iou_metric(tmp_path):
    checkpoint = tmp_path / 'x.pth'
    checkpoint.write_bytes(b'')
    options = {'test_evaluator': dict(type='CityscapesMetric')}
    with pytest.raises(ConfigError, match='IoUMetric'):
        demo.run_test(demo.CONFIG, str(checkpoint), str(tmp_path / 't'),
                      str(tmp_path / 's'), options)


@pytest.fixture
def forget_demo_loggers():
    """Close the demo Runners' loggers (their console is the test's)."""
    yield
    for name in [n for n in MMLogger._instance_dict if n.startswith('demo_')]:
        for handler in MMLogger._instance_dict[name].handlers:
            handler.close()
        del MMLogger._instance_dict[name]


def test_short_demo_end_to_end(tmp_path, toy_cityscapes_tiny, tiny_toy_options,
                               monkeypatch, capsys, forget_demo_loggers):
    monkeypatch.chdir(REPO)  # as the tool does; restored afterwards
    options = load_demo_tool().parse_args(['--cfg-options',
                                           *tiny_toy_options]).cfg_options
    work_dir = tmp_path / 'demo'
    result = demo.run_demo(
        str(work_dir), str(toy_cityscapes_tiny), epochs=1, cfg_options=options)
    out = capsys.readouterr().out
    assert 'Epoch(train)' in out and 'ReparamHook:' in out  # the gist
    assert 'Config:' not in out  # not the whole log

    metrics, classes = result.metrics, result.classes
    assert classes == tuple(CityscapesDataset.METAINFO['classes'])
    per_class = {key for key in metrics if key.startswith('IoU.')}
    assert per_class == {f'IoU.{name}' for name in classes}
    # The summary is the mean over the classes present, as mmseg takes it.
    for score in ('IoU', 'Acc'):
        mean = np.nanmean([metrics[f'{score}.{c}'] for c in classes])
        assert abs(mean - metrics[f'm{score}']) <= 0.01
    assert 0 <= metrics['aAcc'] <= 100
    # The last validation ran the unfused model on the same images and
    # weights; the test ran it fused: the same function.
    assert result.train_miou == pytest.approx(metrics['mIoU'], abs=0.5)
    assert 0 < result.baseline_miou < 100
    # Even two iterations learn more than predicting the commonest class
    # everywhere (seeded: 4.11 against 2.15 mIoU when written).
    assert metrics['mIoU'] > result.baseline_miou

    assert Path(result.checkpoint) == work_dir / 'epoch_1.pth'
    assert (work_dir / 'deploy_final.pth').is_file()
    assert len(result.images) == 2  # every test image drawn
    assert all(Path(p).is_file() for p in result.images)
    assert all(Path(d).is_dir() for d in result.log_dirs)
    # The test config saved beside its logs imports the module that
    # registers its metric, so it runs as it is.
    saved = Config.fromfile(
        str(work_dir / 'test' / 'pspnet_repvgg_toy_cityscapes.py'))
    assert saved.test_evaluator.type == 'PerClassIoUMetric'
    assert 'mmseg_repvgg' in saved.custom_imports.imports

    report = demo.format_report(result)
    assert f'mIoU {metrics["mIoU"]:.2f} ' in report
    rows = report.splitlines()[2:2 + len(classes)]
    for row, name in zip(rows, classes):
        assert row.startswith(name + ' '), row


def test_tool_prints_the_report_of_its_run(monkeypatch, capsys, tmp_path):
    tool = load_demo_tool()
    calls = []

    def fake_run(work_dir, data_root, **kwargs):
        calls.append((work_dir, data_root, kwargs))
        return fake_result()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tool, 'run_demo', fake_run)
    assert tool.main(['--epochs', '2', '--cfg-options', 'a.b=1']) == 0
    (work_dir, data_root, kwargs), = calls
    assert (work_dir, data_root) == ('work_dirs/demo', 'data/toy_cityscapes')
    assert kwargs['epochs'] == 2 and kwargs['cfg_options'] == {'a.b': 1}
    assert demo.format_report(fake_result()) in capsys.readouterr().out
