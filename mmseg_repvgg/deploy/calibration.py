"""Calibration data for the int8 forms: training images, never the images
a form is scored on."""
import copy
from typing import List

from mmengine.runner import Runner
from torch import Tensor, nn

from ..errors import ConfigError

#: Training images that set the int8 forms' activation ranges by default.
CALIBRATION_IMAGES = 8


def innermost_dataset(dataset: dict) -> dict:
    """The dataset config inside RepeatDataset and other wrappers."""
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def eval_dataset_cfg(cfg) -> dict:
    """The test (else val) dataset config inside any wrapper, or ``{}``."""
    for split in ('test', 'val'):
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset'):
            return innermost_dataset(loader['dataset'])
    return {}


def calibration_batches(cfg,
                        model: nn.Module,
                        count: int = CALIBRATION_IMAGES) -> List[Tensor]:
    """The first ``count`` training images, one per batch, by the eval
    pipeline (no random augmentation) and ``model``'s data preprocessor."""
    if count < 1:
        raise ConfigError('--calibration-images must be at least 1')
    train_cfg = copy.deepcopy(cfg.get('train_dataloader'))
    if not train_cfg:
        raise ConfigError('int8 calibration reads training images, but the '
                          'config has no train_dataloader')
    pipeline = eval_dataset_cfg(cfg).get('pipeline')
    if not pipeline:
        raise ConfigError('the config has no test_dataloader/val_dataloader '
                          'whose pipeline calibration images could use')
    dataset = innermost_dataset(train_cfg['dataset'])
    dataset['pipeline'] = copy.deepcopy(pipeline)
    train_cfg.update(
        batch_size=1,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False))
    batches = []
    for batch in Runner.build_dataloader(train_cfg, seed=0):
        batches.append(model.data_preprocessor(batch, False)['inputs'])
        if len(batches) >= count:
            break
    return batches
