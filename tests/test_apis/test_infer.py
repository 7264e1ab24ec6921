"""tools/infer.py: label maps equal to the test loop's, and its inputs.

The toy config shrunk by ``tiny_toy_options`` (32x64 toy Cityscapes, a
narrow model with random BN statistics, so that it predicts several
classes) runs through ``tools/test.py --out`` and ``tools/infer.py``
in-process (``run_tool``); both must label the same pixels the same way.
"""
import argparse
import copy
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import randomize_bn_stats
from mmengine.config import Config, DictAction

from mmseg_repvgg.apis import (DeployInferencer, dataset_meta,
                               train_id_to_label_id)
from mmseg_repvgg.checkpoint import build_segmentor
from mmseg_repvgg.config import load_config
from mmseg_repvgg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / 'configs' / 'pspnet_repvgg_toy_cityscapes.py')
TINY_HW = (32, 64)  # the images of toy_cityscapes_tiny


def parse_options(options):
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


#: (config, checkpoint) per --cfg-options: made once for the whole module.
_TOY = {}


@pytest.fixture
def toy_model_files(tmp_path_factory, tiny_toy_options):
    """The shrunk toy config and a train-time checkpoint of its model, as
    the Runner saves one (state dict and the dataset's classes in
    ``meta``)."""
    key = tuple(tiny_toy_options)
    if key not in _TOY:
        from mmseg.datasets import CityscapesDataset
        cfg = load_config(TOY, parse_options(tiny_toy_options))
        torch.manual_seed(0)
        model = randomize_bn_stats(build_segmentor(cfg))
        path = tmp_path_factory.mktemp('toy_infer') / 'toy.pth'
        meta = dict(dataset_meta=dict(CityscapesDataset.METAINFO), epoch=1)
        torch.save(dict(meta=meta, state_dict=model.state_dict()), path)
        _TOY[key] = cfg, path
    return _TOY[key]


@pytest.fixture
def toy_cfg(toy_model_files):
    return toy_model_files[0]


@pytest.fixture
def toy_checkpoint(toy_model_files):
    return toy_model_files[1]


@pytest.fixture
def val_images(toy_cityscapes_tiny):
    images = sorted(
        (toy_cityscapes_tiny / 'leftImg8bit' / 'val').rglob('*.png'))
    assert len(images) == 2
    return images


@pytest.fixture
def infer(run_tool, toy_checkpoint, tiny_toy_options):
    """``infer(out_dir, *inputs_and_options) -> (exit code, stderr)``."""

    def run(out_dir, *args):
        return run_tool('infer', TOY, toy_checkpoint, *args, '--out-dir',
                        out_dir, '--cfg-options', *tiny_toy_options)

    return run


def read_label(path):
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert label is not None, path
    return label


def error_lines(err):
    """The tool's one-line reports (warnings from libraries aside)."""
    assert 'Traceback' not in err, err
    return [line for line in err.splitlines() if line.startswith('error:')]


def no_temporary_files(folder):
    return not [p for p in Path(folder).rglob('*') if p.name.endswith('.tmp')]


def test_label_maps_equal_the_test_loops(tmp_path, run_tool, infer,
                                         toy_checkpoint, tiny_toy_options,
                                         toy_cityscapes_tiny, val_images):
    test_out = tmp_path / 'test_out'
    code, err = run_tool('test', TOY, toy_checkpoint, '--work-dir',
                         tmp_path / 'work', '--out', test_out, '--cfg-options',
                         *tiny_toy_options)
    assert code == 0, err[-3000:]

    out = tmp_path / 'infer'
    folder = toy_cityscapes_tiny / 'leftImg8bit' / 'val'
    code, err = infer(out, folder, '--save-logits')  # a folder input
    assert code == 0, err[-3000:]
    classes = set()
    for image_path in val_images:
        image = cv2.imread(str(image_path))
        expected = read_label(test_out / f'{image_path.stem}.png')
        labels = read_label(out / f'{image_path.stem}.png')
        assert labels.dtype == np.uint8
        assert labels.shape == expected.shape == image.shape[:2]
        assert (labels == expected).mean() >= 0.999
        classes |= set(np.unique(labels).tolist())

        logits = np.load(out / f'{image_path.stem}.npy')
        assert logits.dtype == np.float32
        assert logits.shape == (19, *image.shape[:2])
        assert (logits.argmax(0) == labels).all()

        overlay = cv2.imread(str(out / 'vis' / f'{image_path.stem}.png'))
        assert overlay.shape == image.shape
        assert not (overlay == image).all()  # something was drawn
    # Several classes predicted, so the agreement says something.
    assert len(classes) >= 2
    assert no_temporary_files(out)


def test_video_gives_an_overlay_video_and_frames(tmp_path, infer, val_images):
    frames = [cv2.imread(str(path)) for path in val_images * 2][:3]
    video = tmp_path / 'clip.mp4'
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*'mp4v'), 5, TINY_HW[::-1])
    if not writer.isOpened():  # no mp4 codec in this cv2 build
        video = tmp_path / 'clip.avi'
        writer = cv2.VideoWriter(
            str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5, TINY_HW[::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()

    out = tmp_path / 'out'
    code, err = infer(out, video, '--save-frames')
    assert code == 0, err[-3000:]
    capture = cv2.VideoCapture(str(out / 'vis' / 'clip.mp4'))
    assert capture.isOpened()
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5)
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame)
    capture.release()
    assert len(read) == 3
    assert all(frame.shape == (*TINY_HW, 3) for frame in read)
    labels = sorted((out / 'clip').glob('*.png'))
    assert [p.name for p in labels] == [f'{i:06d}.png' for i in range(3)]
    assert all(read_label(p).shape == TINY_HW for p in labels)
    assert no_temporary_files(out)


def test_unreadable_image_is_one_line_and_the_rest_go_on(
        tmp_path, infer, val_images):
    bad = tmp_path / 'garbage.png'
    bad.write_bytes(b'this is not a PNG' * 10)
    good = val_images[0]
    out = tmp_path / 'out'
    code, err = infer(out, bad, good)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1 and str(bad) in lines[0], err
    assert 'cannot read the image' in lines[0]
    assert read_label(out / f'{good.stem}.png').shape == TINY_HW
    assert (out / 'vis' / f'{good.stem}.png').is_file()
    assert not list(out.rglob('garbage*'))
    assert no_temporary_files(out)


def test_bad_paths_are_one_line_each(tmp_path, infer):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('not an image')
    unknown = tmp_path / 'labels.json'
    unknown.write_text('{}')
    missing = tmp_path / 'missing.png'
    out = tmp_path / 'out'
    code, err = infer(out, empty, unknown, missing)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 3, err
    assert str(empty) in lines[0] and 'no images' in lines[0]
    assert str(unknown) in lines[1] and "unknown extension '.json'" in lines[1]
    assert str(missing) in lines[2] and 'no such file' in lines[2]
    assert not list(out.rglob('*.png'))


def test_same_stem_is_reported_not_overwritten(tmp_path, infer, val_images):
    first, second = tmp_path / 'a' / 'x.png', tmp_path / 'b' / 'x.png'
    first.parent.mkdir()
    second.parent.mkdir()
    shutil.copy(val_images[0], first)
    small = cv2.imread(str(val_images[1]))[:16, :32]  # another size
    cv2.imwrite(str(second), small)
    out = tmp_path / 'out'
    code, err = infer(out, first, second)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1 and str(second) in lines[0], err
    assert str(first) in lines[0]
    # The first input's prediction, not the second's.
    assert read_label(out / 'x.png').shape == TINY_HW


def test_label_ids_map_train_ids_to_cityscapes_ids(tmp_path, infer,
                                                   val_images):
    image = val_images[1]
    code, err = infer(tmp_path / 'train', image)
    assert code == 0, err[-3000:]
    code, err = infer(tmp_path / 'ids', image, '--label-ids')
    assert code == 0, err[-3000:]
    train = read_label(tmp_path / 'train' / f'{image.stem}.png')
    ids = read_label(tmp_path / 'ids' / f'{image.stem}.png')
    from cityscapesscripts.helpers.labels import trainId2label
    for train_id in np.unique(train):
        assert (ids[train == train_id] == trainId2label[train_id].id).all()
    assert not (ids == train).all()


def test_label_id_table():
    from mmseg.datasets import CityscapesDataset
    table = train_id_to_label_id(CityscapesDataset.METAINFO['classes'])
    # road, sidewalk, car, bicycle
    assert table[[0, 1, 13, 18]].tolist() == [7, 8, 26, 33]
    with pytest.raises(ConfigError, match='not the 19 Cityscapes classes'):
        train_id_to_label_id(('road', 'car', 'sky'))


def test_dataset_meta_sources(toy_cfg):
    tiny = dict(classes=('road', 'car', 'sky'), palette=[[1, 2, 3]] * 3)
    assert dataset_meta(toy_cfg, dict(meta=dict(dataset_meta=tiny)),
                        3) == dict(
                            classes=tiny['classes'], palette=tiny['palette'])
    # No meta: the config's dataset class (a CityscapesDataset).
    meta = dataset_meta(toy_cfg, {}, 19)
    assert meta['classes'][:2] == ('road', 'sidewalk')
    assert len(meta['palette']) == 19
    # Classes of another count are not the model's: numbered ones.
    cfg = Config(dict(test_dataloader=dict(dataset=dict(metainfo=tiny))))
    assert dataset_meta(cfg, {}, 2)['classes'] == ('0', '1')


def test_int8_form_without_calibration_is_a_usage_error(
        tmp_path, infer, val_images):
    code, err = infer(tmp_path / 'out', val_images[0], '--deploy-form', 'int8',
                      '--calibration-images', '0')
    assert code == 2
    assert err.strip().startswith('error:') and 'calibration' in err


def test_inferencer_is_mmsegs_with_the_deploy_form_inside(
        toy_cfg, toy_checkpoint, val_images):
    from mmseg.apis import MMSegInferencer
    cfg = copy.deepcopy(toy_cfg)
    cfg.pop('visualizer', None)  # mmseg's default SegLocalVisualizer
    inferencer = DeployInferencer(cfg, str(toy_checkpoint))
    assert isinstance(inferencer, MMSegInferencer)
    assert inferencer.model.deploy_form == 'fused'
    assert inferencer.deployed.form.name == 'fused'
    image = inferencer.load_image(str(val_images[0]))
    result = inferencer.predict(image)
    labels = inferencer.label_map(result)
    assert labels.dtype == np.uint8 and labels.shape == TINY_HW
    assert (labels == result.pred_sem_seg.data[0].numpy()).all()
    overlay = inferencer.overlay(image, result)
    assert overlay.shape == image.shape and not (overlay == image).all()
    assert inferencer.visualizer.dataset_meta['classes'][0] == 'road'


def test_pipeline_without_a_loader_fails_before_the_checkpoint(toy_cfg):
    cfg = copy.deepcopy(toy_cfg)
    pipeline = cfg.test_dataloader.dataset.pipeline
    cfg.test_dataloader.dataset.pipeline = pipeline[1:]
    with pytest.raises(ConfigError, match='start with LoadImageFromFile'):
        DeployInferencer(cfg, 'no_such_checkpoint.pth')


def test_auto_is_one_choice_whichever_tool_asks(tmp_path, run_tool, infer,
                                                toy_checkpoint,
                                                tiny_toy_options, val_images,
                                                monkeypatch):
    """tools/test.py and tools/infer.py on one checkpoint and input size
    ship the same ``auto`` form: the second reuses the first's ranking,
    although its own clock would pick another form."""
    from mmseg_repvgg.deploy import auto
    clock = {'lowres': 0.01}
    monkeypatch.setattr(auto, 'seconds_per_call',
                        lambda deployed, x: clock.get(deployed.form.name, 1))
    code, err = run_tool('test', TOY, toy_checkpoint, '--deploy-form', 'auto',
                         '--work-dir', tmp_path / 'test', '--cfg-options',
                         *tiny_toy_options)
    assert code == 0, err
    tested = re.search(r'auto chose (\w+); pin it with --deploy-form (\w+)',
                       run_tool.out)
    assert tested and tested.group(1) == tested.group(2) == 'lowres'
    clock = {'winograd': 0.01}
    code, err = infer(tmp_path / 'out', val_images[0], '--deploy-form', 'auto')
    assert code == 0, err
    assert 'auto chose lowres; pin it with --deploy-form lowres' in (
        run_tool.out)
