"""``RepVGGPretrained``: the any-layout loader as an mmengine initializer."""
from typing import Optional

from mmengine.model.weight_init import update_init_info
from mmseg.registry import WEIGHT_INITIALIZERS

from .loading import load_pretrained


@WEIGHT_INITIALIZERS.register_module()
class RepVGGPretrained:
    """Initialize a RepVGG backbone from a checkpoint of any layout.

    Unlike mmengine's ``PretrainedInit``, it converts the layout and loads
    every tensor strictly.

    Args:
        checkpoint (str): A file, URL or name (``mmpretrain://repvgg-B2``).
        prefix (str, optional): Load only the keys under it (``'backbone.'``).
        map_location (str): ``PretrainedInit``'s; tensors load to the CPU.
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
