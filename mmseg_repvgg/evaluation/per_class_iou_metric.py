"""PerClassIoUMetric: mmseg's IoUMetric that returns per-class scores."""
from typing import Dict

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` (same arguments) that also returns what it only
    logs: ``IoU.<class>`` and ``Acc.<class>`` (NaN for an absent class)."""

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        columns = tuple(zip(*results))
        per_class = self.total_area_to_metrics(
            sum(columns[0]), sum(columns[1]), sum(columns[2]), sum(columns[3]),
            ['mIoU'], self.nan_to_num, self.beta)
        for i, name in enumerate(self.dataset_meta['classes']):
            for score in ('IoU', 'Acc'):
                value = float(np.round(per_class[score][i] * 100, 2))
                metrics[f'{score}.{name}'] = value
        return metrics
