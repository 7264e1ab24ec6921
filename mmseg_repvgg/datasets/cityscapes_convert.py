"""Turn the official Cityscapes download into the label files mmseg reads,
skipping missing splits, refusing unknown classes, writing atomically."""
import io
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import name2label
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage
from mmengine.utils import scandir, track_parallel_progress, track_progress
from PIL import Image

from ..atomic_io import atomic_write
from ..errors import DatasetError

SPLITS = ('train', 'val', 'test')
POLYGON_SUFFIX = '_gtFine_polygons.json'
# The label files beside each polygon file, by cityscapesscripts' encoding.
LABEL_SUFFIXES = {
    'trainIds': '_gtFine_labelTrainIds.png',
    'ids': '_gtFine_labelIds.png',
}
INSTANCE_SUFFIX = '_gtFine_instanceIds.png'

GET_DATA_HINT = (
    'download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from '
    'https://www.cityscapes-dataset.com, unzip both into it and run '
    'python tools/convert_cityscapes.py DATA_ROOT; or write the built-in toy '
    'set: python tools/make_toy_cityscapes.py data/toy_cityscapes')


def cityscapes_label_name(name: str) -> Optional[str]:
    """The ``name2label`` key a label stands for (``cargroup``: ``car``)."""
    if name in name2label:
        return name
    if name.endswith('group') and name[:-len('group')] in name2label:
        return name[:-len('group')]
    return None


def load_annotation(json_file: str) -> Annotation:
    """Parse a polygon file, checking its class names before any output."""
    annotation = Annotation()
    try:
        with open(json_file, encoding='utf-8') as f:
            annotation.fromJsonText(f.read())
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise DatasetError(
            f'{json_file}: not a readable Cityscapes polygon file '
            f'({type(err).__name__}: {err}); re-extract gtFine from the '
            'download') from None
    for index, obj in enumerate(annotation.objects):
        if not obj.deleted and cityscapes_label_name(obj.label) is None:
            raise DatasetError(
                f'{json_file}: object {index} has the unknown class '
                f'{obj.label!r}; the names cityscapesscripts knows are those '
                'of cityscapesscripts.helpers.labels (e.g. road, car, '
                "person), optionally with 'group' appended (cargroup)")
    return annotation


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    return buffer.getvalue()


def convert_polygon_file(json_file: str) -> str:
    """Write an image's train-ID PNG beside its polygon file (returned), and
    its label-ID and instance-ID PNGs where missing (not in the download),
    atomically."""
    if not json_file.endswith(POLYGON_SUFFIX):
        raise DatasetError(f'{json_file}: not a *{POLYGON_SUFFIX} file')
    annotation = load_annotation(json_file)
    stem = json_file[:-len(POLYGON_SUFFIX)]
    # Everything is drawn in memory first: a drawing error writes nothing.
    outputs = {}
    for encoding, suffix in LABEL_SUFFIXES.items():
        if encoding == 'trainIds' or not osp.isfile(stem + suffix):
            outputs[stem + suffix] = _png_bytes(
                createLabelImage(annotation, encoding))
    if not osp.isfile(stem + INSTANCE_SUFFIX):
        # Not json2instanceImg: Pillow will not write its 32-bit PNG; the
        # largest ID, 33 * 1000 + 999, fits 16 bits, as in the official files.
        instances = np.asarray(createInstanceImage(annotation, 'ids'))
        outputs[stem + INSTANCE_SUFFIX] = _png_bytes(
            Image.fromarray(instances.astype(np.uint16)))
    for path, data in outputs.items():
        atomic_write(path, data)
    return json_file


def find_polygon_files(data_root: str,
                       splits: Optional[Sequence[str]] = None,
                       gt_dir: str = 'gtFine') -> Dict[str, list]:
    """Split -> its sorted polygon files, of the ``splits`` that exist."""
    if not osp.isdir(data_root):
        raise DatasetError(
            f'{data_root}: Cityscapes data root not found; {GET_DATA_HINT}')
    gt_root = osp.join(data_root, gt_dir)
    if not osp.isdir(gt_root):
        raise DatasetError(
            f'{gt_root}: no {gt_dir} directory in the data root; '
            f'{GET_DATA_HINT}')
    found = {}
    for split in splits or SPLITS:
        split_dir = osp.join(gt_root, split)
        if osp.isdir(split_dir):
            found[split] = sorted(
                scandir(split_dir, POLYGON_SUFFIX, recursive=True))
    return found


def convert_cityscapes(data_root: str,
                       nproc: int = 1,
                       splits: Optional[Sequence[str]] = None,
                       gt_dir: str = 'gtFine') -> Dict[str, int]:
    """Write the label PNGs of every polygon file under ``data_root/gt_dir``
    (of the ``splits`` present; ``nproc`` > 1: in worker processes) and the
    split lists; returns the number of converted images per split."""
    polygon_files = find_polygon_files(data_root, splits, gt_dir)
    gt_root = osp.join(data_root, gt_dir)
    tasks = [
        osp.join(gt_root, split, name)
        for split, names in polygon_files.items() for name in names
    ]
    if not tasks:
        raise DatasetError(
            f'{gt_root}: no *{POLYGON_SUFFIX} files in the splits '
            f'{", ".join(splits or SPLITS)}; {GET_DATA_HINT}')
    if nproc > 1:
        track_parallel_progress(
            convert_polygon_file, tasks, nproc, chunksize=8)
    else:
        track_progress(convert_polygon_file, tasks)
    for split, files in polygon_files.items():  # CITY/CITY_xxxxxx_yyyyyy
        names = [name[:-len(POLYGON_SUFFIX)] + '\n' for name in files]
        atomic_write(osp.join(data_root, f'{split}.txt'), ''.join(names))
    return {split: len(names) for split, names in polygon_files.items()}
