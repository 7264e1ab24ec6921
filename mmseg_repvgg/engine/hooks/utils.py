"""What the reparam hooks share: the segmentor in a wrapper, EMA copies."""
from typing import Dict, Optional

from mmengine.hooks import EMAHook
from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import nn

from ...models.fuse import fuse_segmentor


def unwrap_segmentor(model: nn.Module) -> nn.Module:
    """The segmentor inside a DDP-style wrapper or a TTA model."""
    if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        return model.module
    return model


def fuse_ema_copies(runner, state_dict: Optional[Dict] = None) -> None:
    """Fuse each EMAHook's average as the model, loading ``state_dict``."""
    for hook in runner.hooks:
        average = getattr(hook, 'ema_model', None)
        if not isinstance(hook, EMAHook) or average is None:
            continue  # ema_model is built in before_run
        fuse_segmentor(average.module, inplace=True)
        if state_dict is not None:
            average.module.load_state_dict(state_dict, strict=True)
