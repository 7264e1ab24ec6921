"""Segment images, folders and videos with a deploy form on mmseg's
inferencer (``tools/infer.py``). Not loaded by ``import mmseg_repvgg``: it
needs the deploy wing, which training does not."""
from .inference import DeployInferencer, Summary, inference_pipeline
from .labels import dataset_meta, train_id_to_label_id
from .sources import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, BadInput, Source,
                      collect_sources)

__all__ = [
    'DeployInferencer', 'Summary', 'inference_pipeline', 'dataset_meta',
    'train_id_to_label_id', 'IMAGE_EXTENSIONS', 'VIDEO_EXTENSIONS', 'BadInput',
    'Source', 'collect_sources'
]
