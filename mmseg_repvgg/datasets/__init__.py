"""Cityscapes preparation, a built-in toy Cityscapes, a checked dataset."""
from .checked_cityscapes import CheckedCityscapesDataset
from .cityscapes_convert import convert_cityscapes, convert_polygon_file
from .toy_cityscapes import (DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, DEFAULT_SIZE,
                             make_toy_cityscapes)

__all__ = [
    'CheckedCityscapesDataset', 'DEFAULT_NUM_TRAIN', 'DEFAULT_NUM_VAL',
    'DEFAULT_SIZE', 'convert_cityscapes', 'convert_polygon_file',
    'make_toy_cityscapes'
]
