from .cityscapes_metric import Numpy2CityscapesMetric
from .per_class_iou_metric import PerClassIoUMetric

__all__ = ['Numpy2CityscapesMetric', 'PerClassIoUMetric']
