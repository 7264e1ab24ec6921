"""The toy Cityscapes, the checked dataset, and the official metric on it.

``toy_cityscapes_tiny`` (conftest.py): 4 train and 2 val images of 32x64.
"""
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import name2label
from mmseg.datasets import CityscapesDataset
from mmseg.evaluation import CityscapesMetric
from PIL import Image

from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.datasets import CheckedCityscapesDataset, toy_cityscapes
from mmseg_repvgg.datasets.toy_scene import draw_owner_map, make_scene
from mmseg_repvgg.errors import ConfigError, DatasetError
from mmseg_repvgg.evaluation import Numpy2CityscapesMetric

REPO = Path(__file__).resolve().parents[2]
FIRST = 'aachen/aachen_000000_000019'


def files_of(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(Path(root).rglob('*')) if p.is_file()
    }


def read_png(path):
    return np.asarray(Image.open(path))


# --- The generator ---------------------------------------------------------


def test_real_cityscapes_layout(toy_cityscapes_tiny):
    root = toy_cityscapes_tiny
    img = root / 'leftImg8bit' / 'train' / f'{FIRST}_leftImg8bit.png'
    gt = root / 'gtFine' / 'train' / FIRST
    assert Image.open(img).size == (64, 32) and Image.open(img).mode == 'RGB'
    polygons = (gt.parent / f'{gt.name}_gtFine_polygons.json').read_text()
    assert '"imgHeight": 32' in polygons and '"imgWidth": 64' in polygons
    for suffix in ('labelTrainIds', 'labelIds', 'instanceIds'):
        assert read_png(f'{gt}_gtFine_{suffix}.png').shape == (32, 64)
    val = sorted((root / 'leftImg8bit' / 'val').rglob('*.png'))
    assert [p.name for p in val] == [
        'frankfurt_000000_000019_leftImg8bit.png',
        'frankfurt_000001_000019_leftImg8bit.png'
    ]
    assert (root / 'train.txt').read_text().splitlines()[0] == FIRST
    assert len((root / 'val.txt').read_text().splitlines()) == 2
    assert not list(root.parent.glob(f'.{root.name}.*'))  # staging removed


def test_generator_is_deterministic(tmp_path, toy_cityscapes_tiny):
    again = tmp_path / 'again'
    toy_cityscapes.make_toy_cityscapes(
        str(again), num_train=4, num_val=2, size=(32, 64), seed=0)
    assert files_of(again) == files_of(toy_cityscapes_tiny)
    other = tmp_path / 'other'
    toy_cityscapes.make_toy_cityscapes(
        str(other), num_train=1, num_val=0, size=(32, 64), seed=1)
    name = f'leftImg8bit/train/{FIRST}_leftImg8bit.png'
    assert files_of(other)[name] != files_of(again)[name]


def test_scenes_have_many_classes_and_no_gaps():
    train_ids = set()
    for index in range(8):
        rng = toy_cityscapes.scene_rng(0, 'train', index)
        image, objects = make_scene(rng, toy_cityscapes.DEFAULT_SIZE)
        owner = draw_owner_map(objects, toy_cityscapes.DEFAULT_SIZE)
        assert image.shape == (*toy_cityscapes.DEFAULT_SIZE, 3)
        assert owner.min() >= 0  # every pixel belongs to an object
        train_ids |= {
            name2label[objects[i]['label']].trainId
            for i in np.unique(owner)
        }
    assert len(train_ids - {255}) >= 8


def test_converted_labels_match_the_painted_objects(toy_cityscapes_tiny):
    """The image was painted from the same polygons the labels come from."""
    rng = toy_cityscapes.scene_rng(0, 'val', 1)
    _, objects = make_scene(rng, (32, 64))
    owner = draw_owner_map(objects, (32, 64))
    train_ids = np.array([name2label[o['label']].trainId for o in objects])
    label = read_png(toy_cityscapes_tiny / 'gtFine' / 'val' / 'frankfurt' /
                     'frankfurt_000001_000019_gtFine_labelTrainIds.png')
    np.testing.assert_array_equal(label, train_ids[owner])


def test_existing_data_needs_overwrite(tmp_path):
    root = tmp_path / 'toy'
    toy_cityscapes.make_toy_cityscapes(
        str(root), num_train=2, num_val=1, size=(16, 32))
    with pytest.raises(DatasetError, match='already holds leftImg8bit'):
        toy_cityscapes.make_toy_cityscapes(str(root), size=(16, 32))
    toy_cityscapes.make_toy_cityscapes(
        str(root), num_train=1, num_val=1, size=(16, 32), overwrite=True)
    # The stale second image is gone with the old set.
    assert len(list((root / 'leftImg8bit' / 'train').rglob('*.png'))) == 1
    with pytest.raises(ConfigError, match='size'):
        toy_cityscapes.make_toy_cityscapes(str(tmp_path / 'x'), size=(8, 8))


def test_make_toy_cityscapes_tool(tmp_path, capsys):
    root = tmp_path / 'toy'
    args = [
        str(root), '--num-train', '2', '--num-val', '1', '--size', '16', '32'
    ]
    tool = REPO / 'tools' / 'make_toy_cityscapes.py'
    done = subprocess.run(
        [sys.executable, str(tool)] + args,
        capture_output=True,
        text=True,
        cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert 'wrote toy Cityscapes' in done.stdout
    assert len(list(root.rglob('*_gtFine_labelTrainIds.png'))) == 3
    # Again, in this process (a second interpreter start costs seconds).
    spec = importlib.util.spec_from_file_location('tool_make_toy', tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert run_cli(module.main, args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and '--overwrite' in err


# --- CheckedCityscapesDataset ----------------------------------------------


def build_dataset(root, cls=CheckedCityscapesDataset):
    return cls(
        data_root=str(root),
        data_prefix=dict(
            img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[])


@pytest.fixture
def toy_copy(tmp_path, toy_cityscapes_tiny):
    root = tmp_path / 'toy'
    shutil.copytree(toy_cityscapes_tiny, root)
    return root


def test_checked_dataset_is_cityscapes_dataset_on_good_data(
        toy_cityscapes_tiny):
    checked = build_dataset(toy_cityscapes_tiny)
    plain = build_dataset(toy_cityscapes_tiny, CityscapesDataset)
    assert len(checked) == 2
    assert checked.metainfo['classes'] == plain.metainfo['classes']
    assert [checked.get_data_info(i) for i in range(2)] == \
        [plain.get_data_info(i) for i in range(2)]


def test_checked_dataset_missing_root_or_images(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_dataset(tmp_path / 'no_data')
    # The advice fits the root: Cityscapes for it, the toy set for a toy.
    root = tmp_path / 'no_data'
    assert f'python tools/convert_cityscapes.py {root}' in str(err.value)
    with pytest.raises(
            DatasetError, match='python tools/make_toy_cityscapes.py .*toy_'):
        build_dataset(tmp_path / 'toy_cityscapes')
    (tmp_path / 'leftImg8bit' / 'val').mkdir(parents=True)
    with pytest.raises(DatasetError, match='no \\*_leftImg8bit.png images'):
        build_dataset(tmp_path)


def test_checked_dataset_missing_label(toy_copy):
    label = toy_copy / 'gtFine/val/frankfurt/' \
        'frankfurt_000001_000019_gtFine_labelTrainIds.png'
    label.unlink()
    with pytest.raises(DatasetError) as err:
        build_dataset(toy_copy)
    message = str(err.value)
    assert 'frankfurt_000001_000019_leftImg8bit.png' in message
    assert str(label) in message and 'convert_cityscapes.py' in message


def test_checked_dataset_label_of_another_size(toy_copy):
    label = toy_copy / 'gtFine/val/frankfurt/' \
        'frankfurt_000000_000019_gtFine_labelTrainIds.png'
    Image.fromarray(np.zeros((16, 64), np.uint8)).save(label)
    with pytest.raises(DatasetError) as err:
        build_dataset(toy_copy)
    message = str(err.value)
    assert str(label) in message and '64x16' in message
    assert 'frankfurt_000000_000019_leftImg8bit.png' in message
    assert '64x32' in message


# --- CityscapesMetric (the official evaluation) on the toy labels -----------


def toy_samples(root, predict):
    samples = []
    for label in sorted(Path(root, 'gtFine', 'val').rglob('*TrainIds.png')):
        image = str(label).replace('gtFine', 'leftImg8bit').replace(
            '_leftImg8bit_labelTrainIds', '_leftImg8bit')
        pred = torch.from_numpy(predict(read_png(label)).astype(np.int64))
        samples.append(
            dict(
                img_path=image,
                seg_map_path=str(label),
                pred_sem_seg=dict(data=pred[None])))
    return samples


def test_cityscapes_metric_on_toy_predictions(tmp_path, toy_cityscapes_tiny):
    samples = toy_samples(toy_cityscapes_tiny, lambda gt: gt)
    if not hasattr(np, 'in1d'):  # mmseg's own metric fails on numpy 2
        stock = CityscapesMetric(output_dir=str(tmp_path / 'stock'))
        stock.process({}, samples)
        with pytest.raises(AttributeError, match='in1d'):
            stock.compute_metrics(stock.results)
    perfect = Numpy2CityscapesMetric(output_dir=str(tmp_path / 'perfect'))
    perfect.process({}, samples)
    scores = perfect.compute_metrics(perfect.results)
    assert scores['averageScoreCategories'] > 0.99

    road = Numpy2CityscapesMetric(output_dir=str(tmp_path / 'road'))
    road.process({}, toy_samples(toy_cityscapes_tiny, np.zeros_like))
    assert road.compute_metrics(road.results)['averageScoreCategories'] < 0.5


def test_cityscapes_metric_format_only_writes_label_ids(
        tmp_path, toy_cityscapes_tiny):
    out = tmp_path / 'submit'
    metric = Numpy2CityscapesMetric(
        output_dir=str(out), format_only=True, keep_results=True)
    samples = toy_samples(toy_cityscapes_tiny, lambda gt: gt)
    metric.process({}, samples)
    assert metric.compute_metrics(metric.results) == {}
    for sample in samples:
        name = Path(sample['img_path']).stem + '.png'
        written = read_png(out / name)
        label_ids = read_png(sample['seg_map_path'].replace(
            'labelTrainIds', 'labelIds'))
        valid = read_png(sample['seg_map_path']) != 255
        np.testing.assert_array_equal(written[valid], label_ids[valid])
