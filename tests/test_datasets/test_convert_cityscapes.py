"""The Cityscapes converter (mmseg_repvgg.datasets.cityscapes_convert).

A hand-written polygon dataset of 20x40 images, whose label pixels are
known, stands in for the official download.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmseg_repvgg.cli import run_cli
from mmseg_repvgg.datasets import cityscapes_convert as cc
from mmseg_repvgg.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]
H, W = 20, 40
STEM = 'aachen/aachen_000000_000019'
# Drawn in this order: later polygons cover earlier ones. The top-right
# corner (x > 35, y < 10) is covered by no polygon: unlabeled.
OBJECTS = [
    dict(label='sky', polygon=[[0, 0], [35, 0], [35, 9], [0, 9]]),
    dict(label='road', polygon=[[0, 10], [39, 10], [39, 19], [0, 19]]),
    dict(label='car', polygon=[[5, 12], [14, 12], [14, 17], [5, 17]]),
    dict(label='car', polygon=[[20, 12], [24, 12], [24, 15], [20, 15]]),
    dict(label='cargroup', polygon=[[28, 12], [32, 12], [32, 15], [28, 15]]),
    dict(
        label='license plate', polygon=[[8, 16], [10, 16], [10, 17], [8, 17]]),
    dict(label='person', polygon=[[2, 2], [4, 2], [4, 6], [2, 6]], deleted=1),
]


def write_polygons(root, split, stem, objects, h=H, w=W):
    path = Path(root, 'gtFine', split, stem + cc.POLYGON_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(imgHeight=h, imgWidth=w, objects=objects)))
    return path


def read_png(path):
    return np.asarray(Image.open(path))


@pytest.fixture
def polygon_root(tmp_path):
    """train and val with one image each, no test split."""
    write_polygons(tmp_path, 'train', STEM, OBJECTS)
    write_polygons(tmp_path, 'val', 'lindau/lindau_000001_000019', OBJECTS[:2])
    return tmp_path


def test_converts_polygons_to_train_ids_label_ids_and_instances(polygon_root):
    counts = cc.convert_cityscapes(str(polygon_root))
    assert counts == {'train': 1, 'val': 1}  # the missing test is skipped

    stem = polygon_root / 'gtFine' / 'train' / STEM
    train_ids = read_png(f'{stem}_gtFine_labelTrainIds.png')
    label_ids = read_png(f'{stem}_gtFine_labelIds.png')
    instances = read_png(f'{stem}_gtFine_instanceIds.png')
    assert train_ids.shape == label_ids.shape == instances.shape == (H, W)
    # (y, x): trainId, labelId, instanceId
    expected = {
        (5, 10): (10, 23, 23),  # sky (the deleted person is not drawn)
        (5, 38): (255, 0, 0),  # no polygon: unlabeled
        (18, 30): (0, 7, 7),  # road
        (14, 10): (13, 26, 26000),  # first car
        (16, 9): (13, 26, 26000),  # license plate (id -1): not drawn
        (13, 22): (13, 26, 26001),  # second car
        (13, 30): (13, 26, 26),  # cargroup: a car, but no instance
    }
    for (y, x), ids in expected.items():
        got = (train_ids[y, x], label_ids[y, x], instances[y, x])
        assert got == ids, (y, x)
    assert set(np.unique(train_ids)) == {0, 10, 13, 255}

    assert (polygon_root / 'train.txt').read_text() == STEM + '\n'
    assert (polygon_root / 'val.txt').read_text() == \
        'lindau/lindau_000001_000019\n'
    assert not (polygon_root / 'test.txt').exists()


def test_parallel_conversion_writes_the_same_files(polygon_root, tmp_path):
    serial = tmp_path / 'serial'
    write_polygons(serial, 'train', STEM, OBJECTS)
    cc.convert_cityscapes(str(serial), nproc=1, splits=['train'])
    cc.convert_cityscapes(str(polygon_root), nproc=2)
    for suffix in (*cc.LABEL_SUFFIXES.values(), cc.INSTANCE_SUFFIX):
        name = f'gtFine/train/{STEM}{suffix}'
        assert (serial / name).read_bytes() == \
            (polygon_root / name).read_bytes()


def label_outputs(json_path):
    stem = str(json_path)[:-len(cc.POLYGON_SUFFIX)]
    return [
        Path(stem + suffix)
        for suffix in (*cc.LABEL_SUFFIXES.values(), cc.INSTANCE_SUFFIX)
    ]


def test_unknown_class_names_the_file_and_writes_nothing(tmp_path):
    bad = write_polygons(tmp_path, 'train', STEM,
                         OBJECTS[:2] + [dict(label='unicorn', polygon=[])])
    with pytest.raises(DatasetError) as err:
        cc.convert_cityscapes(str(tmp_path))
    assert str(bad) in str(err.value) and "'unicorn'" in str(err.value)
    assert sorted(p.name for p in bad.parent.iterdir()) == [bad.name]


def test_a_failure_while_drawing_leaves_no_file(tmp_path, monkeypatch):
    json_path = write_polygons(tmp_path, 'train', STEM, OBJECTS)

    def broken(*args):
        raise RuntimeError('drawing failed')

    # The instance image is drawn after the two label images.
    monkeypatch.setattr(cc, 'createInstanceImage', broken)
    with pytest.raises(RuntimeError, match='drawing failed'):
        cc.convert_polygon_file(str(json_path))
    assert sorted(p.name for p in json_path.parent.iterdir()) == \
        [json_path.name]


def test_malformed_polygon_file_names_the_file(tmp_path):
    bad = write_polygons(tmp_path, 'val', STEM, OBJECTS)
    bad.write_text('{"imgHeight": 20, "objects": []}')  # no imgWidth
    with pytest.raises(DatasetError, match=str(bad)):
        cc.convert_cityscapes(str(tmp_path))
    assert not any(p.exists() for p in label_outputs(bad))


def test_missing_data_root_and_empty_download(tmp_path):
    missing = tmp_path / 'cityscapes'
    with pytest.raises(DatasetError) as err:
        cc.convert_cityscapes(str(missing))
    assert str(missing) in str(err.value)
    assert 'tools/make_toy_cityscapes.py' in str(err.value)
    (missing / 'gtFine' / 'test').mkdir(parents=True)
    with pytest.raises(DatasetError, match='no \\*_gtFine_polygons.json'):
        cc.convert_cityscapes(str(missing))


def test_group_suffix_is_accepted_as_cityscapesscripts_does():
    assert cc.cityscapes_label_name('cargroup') == 'car'
    assert cc.cityscapes_label_name('traffic sign') == 'traffic sign'
    assert cc.cityscapes_label_name('unicorngroup') is None


def test_convert_tool_reports_a_missing_root(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'tool_convert_cityscapes', REPO / 'tools' / 'convert_cityscapes.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert run_cli(tool.main, [str(tmp_path / 'nowhere')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'nowhere' in err
    write_polygons(tmp_path, 'train', STEM, OBJECTS)
    assert run_cli(tool.main, [str(tmp_path)]) == 0
    assert (tmp_path / 'gtFine' / 'train' /
            f'{STEM}_gtFine_labelTrainIds.png').is_file()


def test_official_label_id_files_are_kept(tmp_path):
    """labelIds and instanceIds ship with the download: not redrawn."""
    json_path = write_polygons(tmp_path, 'train', STEM, OBJECTS)
    official = label_outputs(json_path)[1:]  # labelIds, instanceIds
    for path in official:
        path.write_bytes(b'official')
    cc.convert_polygon_file(str(json_path))
    assert [p.read_bytes() for p in official] == [b'official'] * 2
    assert read_png(label_outputs(json_path)[0])[14, 10] == 13
