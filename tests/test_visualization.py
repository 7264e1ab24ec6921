"""The demo's ground truth | prediction pictures: a caption over each half,
the class names in a legend below, no name boxes over the image."""
import mmcv
import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_repvgg.visualization import SegPairVisualizer

ROAD, SIDEWALK, BUILDING, CAR = 0, 1, 2, 13


def _visualizer(name: str) -> SegPairVisualizer:
    # alpha 1: each pixel is its class's colour, so any box or text shows.
    return SegPairVisualizer(name=name, dataset_name='cityscapes', alpha=1.0)


def _sample() -> SegDataSample:
    gt = torch.full((1, 32, 64), ROAD)
    gt[:, :16] = BUILDING
    pred = gt.clone()
    pred[:, 20:, :16] = CAR
    return SegDataSample(
        gt_sem_seg=PixelData(data=gt), pred_sem_seg=PixelData(data=pred))


def _colours(image: np.ndarray) -> set:
    return {tuple(c) for c in image.reshape(-1, 3).tolist()}


def test_pair_has_captions_and_a_legend(tmp_path):
    vis = _visualizer('pair')
    palette = [tuple(c) for c in vis.dataset_meta['palette']]
    vis.add_datasample(
        'x',
        np.zeros((32, 64, 3), np.uint8),
        _sample(),
        out_file=str(tmp_path / 'x.png'))
    drawn = mmcv.imread(str(tmp_path / 'x.png'), channel_order='rgb')
    strip = drawn[:20]  # the captions: dark text on white
    assert drawn.shape[1] == 128 and (strip == 255).mean() > 0.5
    assert strip.min() < 64
    assert (strip[:, :64] != strip[:, 64:]).any()  # two different words
    gt, pred = drawn[20:52, :64], drawn[20:52, 64:]
    assert _colours(gt) == {palette[ROAD], palette[BUILDING]}
    assert _colours(pred) == {palette[ROAD], palette[BUILDING], palette[CAR]}
    legend = _colours(drawn[52:])
    assert {palette[ROAD], palette[BUILDING], palette[CAR]} <= legend
    assert palette[SIDEWALK] not in legend  # only the classes shown


def test_prediction_alone_is_drawn_as_mmseg_draws_it():
    """The inferencer's overlay keeps the input's size."""
    vis = _visualizer('alone')
    vis.add_datasample(
        'x', np.zeros((32, 64, 3), np.uint8), _sample(), draw_gt=False)
    assert vis.get_image().shape == (32, 64, 3)
