"""Ground truth | prediction pictures that read at a glance: each half
captioned, a legend naming the classes (not boxed over small regions)."""
import warnings
from typing import List, Sequence, Tuple

import cv2
import mmcv
import numpy as np
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS, VISUALIZERS
from mmseg.visualization import SegLocalVisualizer

_FONT, _SCALE, _LINE = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 20
_WHITE, _BLACK = (255, 255, 255), (0, 0, 0)


def _legend(entries: Sequence[Tuple[str, Sequence[int]]],
            width: int) -> np.ndarray:
    """Swatch and name of each (name, RGB colour), in rows ``width`` wide."""
    places: List[Tuple[int, int]] = []
    x = y = 0
    for name, _ in entries:
        size = _LINE + cv2.getTextSize(name, _FONT, _SCALE, 1)[0][0] + 12
        if x and x + size > width:
            x, y = 0, y + _LINE
        places.append((x, y))
        x += size
    legend = np.full((y + _LINE + 4, width, 3), 255, np.uint8)
    for (name, color), (x, y) in zip(entries, places):
        cv2.rectangle(legend, (x + 4, y + 4), (x + _LINE - 4, y + _LINE - 4),
                      tuple(int(c) for c in color), -1)
        cv2.putText(legend, name, (x + _LINE, y + _LINE - 6), _FONT, _SCALE,
                    _BLACK, 1, cv2.LINE_AA)
    return legend


@VISUALIZERS.register_module()
class SegPairVisualizer(SegLocalVisualizer):
    """``SegLocalVisualizer`` (same arguments) whose ground truth |
    prediction pairs have the colours only, a caption over each half and a
    legend of the classes shown below them. A prediction alone (the
    inferencer's overlay) is drawn as mmseg draws it."""

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample=None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file=None,
                       step: int = 0,
                       with_labels: bool = True) -> None:
        """As mmseg's; ``with_labels`` adds the legend to a pair."""
        keys = ('gt_sem_seg', 'pred_sem_seg')
        if not (draw_gt and draw_pred and data_sample is not None
                and all(key in data_sample for key in keys)):
            return super().add_datasample(name, image, data_sample, draw_gt,
                                          draw_pred, show, wait_time, out_file,
                                          step, with_labels)
        classes = self.dataset_meta['classes']
        palette = self.dataset_meta['palette']
        halves, shown = [], set()
        for key, caption in zip(keys, ('ground truth', 'prediction')):
            sem_seg = data_sample.get(key)
            shown.update(np.unique(sem_seg.cpu().data).tolist())
            drawn = self._draw_sem_seg(image, sem_seg, classes, palette, False)
            strip = np.full((_LINE, drawn.shape[1], 3), 255, np.uint8)
            cv2.putText(strip, caption, (4, _LINE - 6), _FONT, _SCALE, _BLACK,
                        1, cv2.LINE_AA)
            halves.append(np.concatenate([strip, drawn]))
        drawn = np.concatenate(halves, axis=1)
        if with_labels:
            ids = sorted(i for i in shown if 0 <= i < len(classes))
            legend = _legend([(classes[i], palette[i]) for i in ids],
                             drawn.shape[1])
            drawn = np.concatenate([drawn, legend])
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)


@HOOKS.register_module()
class QuietSegVisualizationHook(SegVisualizationHook):
    """mmseg's hook without its ``draw=False`` warning; --show-dir draws."""

    def __init__(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings(
                'ignore', 'The draw is False', category=UserWarning)
            super().__init__(*args, **kwargs)
