"""mmseg's CityscapesDataset, failing early and clearly on missing data."""
import os
import os.path as osp
from typing import List

from mmengine import fileio
from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS
from PIL import Image

from ..errors import DatasetError
from .cityscapes_convert import POLYGON_SUFFIX


def get_data(root) -> str:
    """How to get the data a config reads from ``root`` (toy or real)."""
    root = str(root or 'DATA_ROOT').rstrip('/')
    if 'toy' in osp.basename(root):
        return ('write the built-in toy set there: python '
                f'tools/make_toy_cityscapes.py {root}')
    return ('download Cityscapes (leftImg8bit_trainvaltest.zip, '
            'gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com),'
            f' unzip both into {root} and run python '
            f'tools/convert_cityscapes.py {root}')


def _image_size(path: str) -> tuple:
    """(W, H) from the file's header; PIL reads no pixels for this."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as err:
        raise DatasetError(f'{path}: not a readable image ({err}); '
                           're-extract or re-convert it') from None


def check_data_root(root) -> None:
    """Refuse a local ``data_root`` that is missing or a file."""
    if not root or '://' in str(root) or osp.isdir(root):
        return
    if osp.exists(root):
        raise DatasetError(f'{root} (data_root) is a file, not a directory; '
                           "pass the dataset's directory")
    raise DatasetError(f'{root}: dataset root not found (data_root, relative '
                       f'to {os.getcwd()}); {get_data(root)}')


@DATASETS.register_module()
class CheckedCityscapesDataset(CityscapesDataset):
    """mmseg's ``CityscapesDataset`` (same arguments) that names the fix when
    the data root or images are missing, or a label is missing or of another
    size (local files only)."""

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path', '')
        backend = fileio.get_file_backend(
            img_dir or '.', backend_args=self.backend_args)
        if not isinstance(backend, fileio.LocalBackend):
            return super().load_data_list()
        check_data_root(self.data_root)
        if not osp.isdir(img_dir):
            raise DatasetError(f'{img_dir}: image directory not found; '
                               f'{get_data(self.data_root)}')
        data_list = super().load_data_list()
        if not data_list:
            raise DatasetError(
                f'{img_dir}: no *{self.img_suffix} images in it '
                f'(or in its subdirectories); {get_data(self.data_root)}')
        for info in data_list:
            self._check_pair(info['img_path'], info.get('seg_map_path'))
        return data_list

    def _check_pair(self, img_path: str, seg_path) -> None:
        if not osp.isfile(img_path):  # listed in an ann_file
            raise DatasetError(f'{img_path}: image not found (listed in '
                               f'{self.ann_file}); {get_data(self.data_root)}')
        if seg_path is None:  # no seg_map_path: images only
            return
        if not osp.isfile(seg_path):
            polygons = seg_path[:-len(self.seg_map_suffix)] + POLYGON_SUFFIX
            fix = (f'convert the polygons with python '
                   f'tools/convert_cityscapes.py {self.data_root or "ROOT"}'
                   if osp.isfile(polygons) else get_data(self.data_root))
            raise DatasetError(f'{img_path}: its label file {seg_path} is '
                               f'missing; {fix}')
        img_size, seg_size = _image_size(img_path), _image_size(seg_path)
        if img_size != seg_size:
            raise DatasetError(
                f'{seg_path} is {seg_size[0]}x{seg_size[1]} (WxH) but its '
                f'image {img_path} is {img_size[0]}x{img_size[1]}; the label '
                'must have the size of its image: re-convert the labels from '
                'the polygon files or fix the image')
