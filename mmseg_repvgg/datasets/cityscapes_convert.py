"""Turn the official Cityscapes download into the label files mmseg reads.

Beside each polygon file: ``labelTrainIds`` (what mmseg trains on), and
where missing ``labelIds`` and ``instanceIds`` (what the official
evaluation reads); plus ``SPLIT.txt`` lists. Unlike mmseg's converter a
missing split is skipped, an unknown class is an error, writes are atomic.
"""
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
#: Label files written next to each polygon file, by cityscapesscripts'
#: encoding name.
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
    """The cityscapesscripts label a polygon's class name stands for.

    cityscapesscripts accepts the 34 names of ``name2label`` and, for a
    crowd of objects, the name with ``group`` appended (``cargroup``).

    Args:
        name (str): The ``label`` of a polygon.

    Returns:
        str | None: The key into ``name2label``, or None if unknown.
    """
    if name in name2label:
        return name
    if name.endswith('group') and name[:-len('group')] in name2label:
        return name[:-len('group')]
    return None


def load_annotation(json_file: str) -> Annotation:
    """Parse a polygon file and check every class name in it.

    cityscapesscripts would print an error and call ``sys.exit`` at the
    first unknown name, after it may have started an output file; checking
    all names first keeps the error an exception and the outputs untouched.

    Args:
        json_file (str): A ``*_gtFine_polygons.json``.

    Returns:
        Annotation: The parsed annotation.

    Raises:
        DatasetError: The file is not a readable polygon file, or names a
            class cityscapesscripts does not know.
    """
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
    """Write the train-ID, label-ID and instance-ID PNGs of one image.

    The label-ID and instance-ID files ship with the official download
    (gtFine_trainvaltest.zip); they are drawn only where missing (the toy
    set), so the official files are never touched. The train IDs are
    always drawn.

    Args:
        json_file (str): A ``*_gtFine_polygons.json``; the PNGs are written
            beside it, each atomically.

    Returns:
        str: ``json_file``.

    Raises:
        DatasetError: See :func:`load_annotation`. Nothing is written then.
    """
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
        # Not json2instanceImg: its 32-bit image is one Pillow will not
        # write as PNG. The largest ID, 33 * 1000 + 999, fits 16 bits, as
        # in the official files.
        instances = np.asarray(createInstanceImage(annotation, 'ids'))
        outputs[stem + INSTANCE_SUFFIX] = _png_bytes(
            Image.fromarray(instances.astype(np.uint16)))
    for path, data in outputs.items():
        atomic_write(path, data)
    return json_file


def find_polygon_files(data_root: str,
                       splits: Optional[Sequence[str]] = None,
                       gt_dir: str = 'gtFine') -> Dict[str, list]:
    """The polygon files of each split present under ``data_root/gt_dir``.

    Args:
        data_root (str): The Cityscapes root.
        splits (Sequence[str], optional): Splits to look for. Defaults to
            train, val and test; a missing one is skipped.
        gt_dir (str): The annotation directory. Defaults to 'gtFine'.

    Returns:
        dict[str, list[str]]: Split name to sorted paths relative to
        ``data_root/gt_dir/SPLIT``; only the splits that exist.

    Raises:
        DatasetError: ``data_root`` or its ``gt_dir`` is missing.
    """
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


def write_split_lists(data_root: str, polygon_files: Dict[str, list]) -> None:
    """Write ``SPLIT.txt`` (``CITY/CITY_xxxxxx_yyyyyy`` lines), like mmseg.

    Args:
        data_root (str): Where the lists go.
        polygon_files (dict[str, list[str]]): See
            :func:`find_polygon_files`.
    """
    for split, files in polygon_files.items():
        names = [name[:-len(POLYGON_SUFFIX)] + '\n' for name in files]
        atomic_write(osp.join(data_root, f'{split}.txt'), ''.join(names))


def convert_cityscapes(data_root: str,
                       nproc: int = 1,
                       splits: Optional[Sequence[str]] = None,
                       gt_dir: str = 'gtFine') -> Dict[str, int]:
    """Write the label PNGs of every polygon file and the split lists.

    Args:
        data_root (str): The Cityscapes root (holding ``leftImg8bit`` and
            ``gtFine``).
        nproc (int): Worker processes; 1 converts in this process.
            Defaults to 1.
        splits (Sequence[str], optional): Splits to convert. Defaults to
            train, val and test; missing ones are skipped.
        gt_dir (str): The annotation directory. Defaults to 'gtFine'.

    Returns:
        dict[str, int]: Number of converted images per split found.

    Raises:
        DatasetError: The data root or its annotations are missing, there
            is no polygon file at all, or one is malformed or names an
            unknown class (the message names the file).
    """
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
    write_split_lists(data_root, polygon_files)
    return {split: len(names) for split, names in polygon_files.items()}
