"""``RepVGGPretrained``: the any-layout loader as an mmengine initializer."""
from typing import Optional

from mmengine.model.weight_init import update_init_info
from mmseg.registry import WEIGHT_INITIALIZERS

from .loading import load_pretrained


@WEIGHT_INITIALIZERS.register_module()
class RepVGGPretrained:
    """Initialize a RepVGG backbone from a checkpoint of any layout.

    ``init_cfg=dict(type='RepVGGPretrained', checkpoint=PATH)`` in a
    backbone config. Unlike mmengine's ``PretrainedInit``, which loads keys
    as they are and non-strictly, this detects the layout (official,
    mmpretrain, timm, ours; train-time or fused), converts it to the
    backbone's form and loads every tensor strictly
    (:func:`~mmseg_repvgg.checkpoint.load_pretrained`).

    Args:
        checkpoint (str): A local ``.pth``/``.bin`` (read weights-only) or
            ``.safetensors`` file, an ``http(s)://`` URL, or a name such as
            ``mmpretrain://repvgg-B2`` (:mod:`.download`): downloaded once
            into torch's hub cache, then read as a local file.
        prefix (str, optional): Load only the keys under it, e.g.
            ``'backbone.'`` of a whole segmentor. Defaults to None.
        map_location (str): Accepted for ``PretrainedInit``'s signature;
            tensors are always read to the CPU first. Defaults to 'cpu'.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 map_location: str = 'cpu'):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.wholemodule = True

    def __call__(self, module) -> None:
        layout = load_pretrained(module, self.checkpoint, prefix=self.prefix)
        if hasattr(module, '_params_init_info'):
            update_init_info(
                module,
                init_info=f'{type(self).__name__}: {self.checkpoint} '
                f'({layout} layout)')

    def __repr__(self) -> str:
        return f'{type(self).__name__}(checkpoint={self.checkpoint!r})'
