"""What a prediction's labels mean: the classes and palette to draw with
(mmseg's inferencer looks only at the checkpoint, then assumes
Cityscapes), and Cityscapes label IDs for the test server."""
from typing import List, Optional, Sequence

import numpy as np
from mmengine.config import Config
from mmseg.registry import DATASETS

from ..deploy.calibration import eval_dataset_cfg
from ..errors import ConfigError


def _default_palette(num_classes: int) -> List[List[int]]:
    """The colours mmseg's BaseSegDataset draws for classes without any."""
    rng = np.random.RandomState(42)
    return rng.randint(0, 255, size=(num_classes, 3)).tolist()


def dataset_meta(cfg: Config,
                 checkpoint: dict,
                 num_classes: Optional[int] = None) -> dict:
    """The classes and palette to draw with: the first of the checkpoint's
    ``meta['dataset_meta']``, the test dataset's ``metainfo`` and its class's
    ``METAINFO`` with the model's class count, else numbered classes; a
    missing or mis-sized palette is drawn as mmseg's datasets do. Returns
    ``classes`` (tuple of str) and ``palette`` (list of RGB)."""
    dataset = eval_dataset_cfg(cfg)
    dataset_type = dataset.get('type')
    if isinstance(dataset_type, str):
        dataset_type = DATASETS.get(dataset_type)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    found = [
        (meta or {}).get('dataset_meta') or {},
        dataset.get('metainfo') or {},
        getattr(dataset_type, 'METAINFO', None) or {},
    ]
    for candidate in found:
        classes = candidate.get('classes')
        if classes and num_classes in (None, len(classes)):
            palette = candidate.get('palette')
            break
    else:
        classes = [str(i) for i in range(num_classes or 0)]
        palette = None
    if not classes:
        raise ConfigError('cannot tell the classes: the checkpoint has no '
                          "meta['dataset_meta'] and the config's test "
                          'dataset no metainfo')
    if not palette or len(palette) != len(classes):
        palette = _default_palette(len(classes))
    return dict(
        classes=tuple(classes), palette=[list(map(int, c)) for c in palette])


def train_id_to_label_id(classes: Sequence[str]) -> np.ndarray:
    """A uint8 lookup table of 256 from train IDs (road 0) to the Cityscapes
    label IDs (road 7) the test server wants, from cityscapesscripts;
    ConfigError unless ``classes`` are the 19 Cityscapes classes in order."""
    from cityscapesscripts.helpers.labels import trainId2label
    names = [trainId2label[i].name for i in range(19)]
    if [c.lower() for c in classes] != names:
        raise ConfigError(
            '--label-ids maps Cityscapes train IDs to label IDs, but the '
            f'model\'s classes are not the 19 Cityscapes classes '
            f'({", ".join(list(classes)[:4])}, ...); drop --label-ids')
    table = np.zeros(256, np.uint8)  # anything else: 0, 'unlabeled'
    for train_id in range(19):
        table[train_id] = trainId2label[train_id].id
    return table
