"""Applications on mmseg's APIs: segment images, folders and videos with a
deploy form (``tools/infer.py``).

Not loaded by ``import mmseg_repvgg``: it needs the deploy wing, which
training does not. Import it explicitly.

* :mod:`.inference`: :class:`DeployInferencer`, mmseg's
  ``MMSegInferencer`` running a deploy form and writing named outputs.
* :mod:`.sources`: the images and videos a command line names.
* :mod:`.labels`: classes and palette to draw with; Cityscapes label IDs.
"""
from .inference import DeployInferencer, Summary, inference_pipeline
from .labels import dataset_meta, train_id_to_label_id
from .sources import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, BadInput, Source,
                      collect_sources)

__all__ = [
    'DeployInferencer', 'Summary', 'inference_pipeline', 'dataset_meta',
    'train_id_to_label_id', 'IMAGE_EXTENSIONS', 'VIDEO_EXTENSIONS', 'BadInput',
    'Source', 'collect_sources'
]
