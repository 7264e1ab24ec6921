"""A built-in toy Cityscapes: street scenes a small CNN learns on a CPU, as
Cityscapes files converted as the real download is."""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, Tuple

import cv2
import numpy as np
from mmengine.utils import (mkdir_or_exist, track_parallel_progress,
                            track_progress)

from ..atomic_io import atomic_write
from ..errors import ConfigError, DatasetError
from .cityscapes_convert import POLYGON_SUFFIX, convert_cityscapes
from .toy_scene import make_scene

DEFAULT_SIZE = (128, 256)  # (H, W): the toy config trains on whole images
DEFAULT_NUM_TRAIN = 64
DEFAULT_NUM_VAL = 16
MIN_SIZE = (16, 32)
# Real Cityscapes cities of each split, 16 images each, then the next.
CITIES = {
    'train': ('aachen', 'bochum', 'bremen', 'cologne', 'darmstadt',
              'dusseldorf', 'erfurt', 'hamburg', 'hanover', 'jena'),
    'val': ('frankfurt', 'lindau', 'munster'),
}
IMAGES_PER_CITY = 16
FRAME = 19  # the annotated frame of every Cityscapes snippet
IMG_SUFFIX = '_leftImg8bit.png'
# What a toy root holds; gtFine, moved in last, means the set is complete.
OUTPUTS = ('leftImg8bit', 'train.txt', 'val.txt', 'gtFine')


def toy_name(split: str, index: int) -> str:
    """``CITY/CITY_SSSSSS_FFFFFF`` of the ``index``-th image of a split."""
    cities = CITIES[split]
    city = cities[index // IMAGES_PER_CITY % len(cities)]
    snippet = index % IMAGES_PER_CITY + (
        index // (IMAGES_PER_CITY * len(cities))) * IMAGES_PER_CITY
    return f'{city}/{city}_{snippet:06d}_{FRAME:06d}'


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """One image's generator: (seed, split, index) alone decide it."""
    return np.random.default_rng([seed, list(CITIES).index(split), index])


def _write_sample(task: Tuple[str, str, int, int, Tuple[int, int]]) -> str:
    root, split, index, seed, size = task
    image, objects = make_scene(scene_rng(seed, split, index), size)
    name = toy_name(split, index)
    img_path = osp.join(root, 'leftImg8bit', split, name + IMG_SUFFIX)
    json_path = osp.join(root, 'gtFine', split, name + POLYGON_SUFFIX)
    for path in (img_path, json_path):
        mkdir_or_exist(osp.dirname(path))
    ok, png = cv2.imencode('.png', image[..., ::-1],
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok, 'cv2 failed to encode a PNG'
    atomic_write(img_path, png.tobytes())
    objects = [dict(label=o['label'], polygon=o['polygon']) for o in objects]
    polygons = dict(imgHeight=size[0], imgWidth=size[1], objects=objects)
    atomic_write(json_path, json.dumps(polygons, indent=4))
    return name


def _move_into_place(staging: str, root: str, overwrite: bool) -> None:
    mkdir_or_exist(root)
    for name in OUTPUTS:
        src, dst = osp.join(staging, name), osp.join(root, name)
        if not osp.lexists(src):
            continue
        if overwrite and osp.isdir(dst) and not osp.islink(dst):
            shutil.rmtree(dst)
        elif overwrite and osp.lexists(dst):
            os.remove(dst)
        os.replace(src, dst)


def make_toy_cityscapes(root: str,
                        num_train: int = DEFAULT_NUM_TRAIN,
                        num_val: int = DEFAULT_NUM_VAL,
                        size: Tuple[int, int] = DEFAULT_SIZE,
                        seed: int = 0,
                        nproc: int = 1,
                        overwrite: bool = False) -> Dict[str, int]:
    """Write the toy Cityscapes (images of ``size`` (H, W); the same seed
    writes the same files) to ``root`` through a hidden directory beside it,
    so an interrupted run leaves no half-written dataset behind; a dataset
    already there is replaced only with ``overwrite``. Returns the images
    written per split."""
    if num_train < 1 or num_val < 0:
        raise ConfigError(
            f'num_train={num_train}, num_val={num_val}: need at least one '
            'training image and no negative count')
    if len(size) != 2 or size[0] < MIN_SIZE[0] or size[1] < MIN_SIZE[1]:
        raise ConfigError(f'size={tuple(size)}: give (H, W) of at least '
                          f'{MIN_SIZE}')
    root = osp.abspath(root)
    existing = [n for n in OUTPUTS if osp.lexists(osp.join(root, n))]
    if existing and not overwrite:
        raise DatasetError(
            f'{root}: already holds {", ".join(existing)}; remove them, '
            'choose another directory or pass --overwrite')
    parent = osp.dirname(root)
    mkdir_or_exist(parent)
    staging = tempfile.mkdtemp(
        prefix=f'.{osp.basename(root)}.', suffix='.tmp', dir=parent)
    try:
        size = (int(size[0]), int(size[1]))
        tasks = [(staging, 'train', i, seed, size) for i in range(num_train)]
        tasks += [(staging, 'val', i, seed, size) for i in range(num_val)]
        if nproc > 1:
            track_parallel_progress(_write_sample, tasks, nproc, chunksize=4)
        else:
            track_progress(_write_sample, tasks)
        counts = convert_cityscapes(staging, nproc=nproc, splits=list(CITIES))
        _move_into_place(staging, root, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts
