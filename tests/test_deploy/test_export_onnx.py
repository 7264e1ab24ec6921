"""ONNX export of the fused segmentor, checked in onnxruntime.

Fixtures (tiny PSPNet-RepVGG config and checkpoint) are in conftest.py.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmseg_repvgg.checkpoint import load_segmentor
from mmseg_repvgg.deploy.onnx_export import (ShapeGenericAdaptiveAvgPool2d,
                                             check_export_shape, check_onnx,
                                             export_onnx)
from mmseg_repvgg.errors import ConfigError
from mmseg_repvgg.models import segmentor_logits

# The deploy extra (setup.cfg): an install without it skips this module.
onnx = pytest.importorskip('onnx')
onnxruntime = pytest.importorskip('onnxruntime')

REPO = Path(__file__).resolve().parents[2]


def export_tool():
    spec = importlib.util.spec_from_file_location(
        'tool_export_onnx', REPO / 'tools' / 'export_onnx.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_onnx(path, inputs):
    session = onnxruntime.InferenceSession(
        str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {'input': inputs.numpy()})[0]


@torch.no_grad()
def test_export_tool_matches_onnxruntime(tiny_seg_checkpoint, tmp_path,
                                         capsys):
    config = tmp_path / 'tiny_pspnet_repvgg.py'
    out = tmp_path / 'tiny.onnx'
    export_tool().main([
        str(config),
        str(tiny_seg_checkpoint), '--out',
        str(out), '--shape', '32', '64'
    ])
    assert 'max abs difference of the logits' in capsys.readouterr().out

    graph = onnx.load(str(out)).graph
    ops = {node.op_type for node in graph.node}
    assert 'BatchNormalization' not in ops and 'Conv' in ops
    # Our own comparison, independent of the tool's.
    model, _ = load_segmentor(
        Config.fromfile(str(config)), str(tiny_seg_checkpoint))
    inputs = torch.randn(1, 3, 32, 64)
    expected = segmentor_logits(model, inputs).numpy()
    actual = run_onnx(out, inputs)
    assert actual.shape == (1, 3, 32, 64)
    assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()


@torch.no_grad()
def test_dynamic_label_map_export(tiny_seg_cfg, tiny_seg_checkpoint, tmp_path):
    model, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    out = tmp_path / 'labels.onnx'
    report = export_onnx(model, str(out), (32, 64), argmax=True, dynamic=True)
    assert len(report.blocks) == 6 and model.with_auxiliary_head  # a copy
    # Other batch sizes and sizes whose features are not multiples of the
    # pool scales: the frozen bins of a plain adaptive pool would be wrong.
    shapes = [(1, 3, 32, 64), (2, 3, 40, 72), (1, 3, 64, 128)]
    results = check_onnx(str(out), model, shapes, argmax=True)
    assert [r.shape for r in results] == shapes
    labels = run_onnx(out, torch.randn(2, 3, 40, 72))
    assert labels.shape == (2, 40, 72) and labels.dtype == np.int64


def test_impossible_shapes_name_the_nearest_valid_ones(tiny_seg_cfg,
                                                       tiny_seg_checkpoint,
                                                       tmp_path):
    model, _ = load_segmentor(tiny_seg_cfg, str(tiny_seg_checkpoint))
    with pytest.raises(ConfigError, match='output stride 8') as err:
        check_export_shape(model, 36, 64)
    assert '--shape 32 64 or --shape 40 64' in str(err.value)
    with pytest.raises(ConfigError, match='--shape 8 8 or --shape 16 16'):
        check_export_shape(model, 4, 0)
    out = tmp_path / 'never.onnx'
    with pytest.raises(ConfigError):
        export_onnx(model, str(out), (30, 64))
    assert not out.exists()


@pytest.mark.parametrize('output_size', [1, 2, 3, 6, (2, None)])
def test_shape_generic_pool_equals_adaptive_pool(output_size):
    torch.manual_seed(0)
    generic = ShapeGenericAdaptiveAvgPool2d(output_size)
    native = nn.AdaptiveAvgPool2d(output_size)
    for size in [(1, 1), (4, 8), (5, 9), (7, 3), (12, 12)]:
        x = torch.randn(2, 3, *size)
        torch.testing.assert_close(generic(x), native(x), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_cli_exports_a_grouped_fast_dilated_arch(tiny_seg_cfg, tmp_path,
                                                 capsys):
    """The tool, --dynamic --argmax, on a groupwise arch with the "fast"
    dilation pattern (the paper's B1g2-fast in miniature)."""
    from conftest import randomize_bn_stats

    from mmseg_repvgg.checkpoint import build_segmentor
    cfg = tiny_seg_cfg.copy()
    cfg.merge_from_dict({
        'model.backbone.arch.group_layer_map': {
            2: 2,
            4: 2
        },
        'model.backbone.dilated_blocks': (0, 0, 1, 1)
    })
    config = tmp_path / 'grouped_fast.py'
    cfg.dump(str(config))
    torch.manual_seed(0)
    model = randomize_bn_stats(build_segmentor(cfg)).eval()
    backbone = model.backbone
    assert backbone.stage2[0].branch_3x3.conv.groups == 2
    assert backbone.stage3[0].branch_3x3.conv.dilation == (1, 1)
    assert backbone.stage3[1].branch_3x3.conv.dilation == (2, 2)
    checkpoint = tmp_path / 'grouped_fast.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    out = tmp_path / 'grouped_fast.onnx'
    export_tool().main([
        str(config),
        str(checkpoint), '--out',
        str(out), '--shape', '32', '64', '--dynamic', '--argmax'
    ])
    capsys.readouterr()
    # Labels at other sizes and batches equal PyTorch's (near ties aside).
    shapes = [(1, 3, 32, 64), (2, 3, 48, 80)]
    checks = check_onnx(str(out), model, shapes, argmax=True)
    assert [c.shape for c in checks] == shapes
    assert all(c.mismatched <= 2 for c in checks)
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert 'ArgMax' in ops and 'BatchNormalization' not in ops
