from .cityscapes_metric import Numpy2CityscapesMetric

__all__ = ['Numpy2CityscapesMetric']
