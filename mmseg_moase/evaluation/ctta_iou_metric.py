"""mmseg's IoUMetric, also returning per-class IoU (same maths, same code)."""
from typing import Dict, Sequence

import numpy as np

from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


def summed_areas(results: Sequence[tuple]) -> tuple:
    """Sum IoUMetric's per-image (intersect, union, pred, label) area tuples."""
    return tuple(sum(col) for col in zip(*results))


@METRICS.register_module()
class CTTAIoUMetric(IoUMetric):
    """:class:`mmseg.evaluation.IoUMetric` plus ``IoU.<class>`` entries.

    Everything is computed by ``IoUMetric`` itself (``intersect_and_union`` per
    image, ``total_area_to_metrics`` over the pass, its per-class table in the log);
    this class only also returns the per-class IoU (in %, NaN for a class absent
    from both prediction and label) that ``IoUMetric`` prints but does not return,
    and keeps each image's pixel counts in float64: they are whole numbers, so
    their sums over a pass are exact in any order (float32 sums of counts past
    2**24, e.g. 400 ACDC images, depend on the order, and a distributed run
    gathers the images of its ranks in another order than one process).
    """

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        first = len(self.results)
        super().process(data_batch, data_samples)
        self.results[first:] = [tuple(t.double() for t in r)
                                for r in self.results[first:]]

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        per_class = self.total_area_to_metrics(*summed_areas(results), ['mIoU'],
                                               self.nan_to_num, self.beta)
        for name, iou in zip(self.dataset_meta['classes'], per_class['IoU']):
            metrics[f'IoU.{name}'] = float(np.round(float(iou) * 100, 2))
        return metrics

    def running_miou(self) -> float:
        """mIoU (%) of the images processed so far in this pass (for progress)."""
        if not self.results:
            return float('nan')
        ret = self.total_area_to_metrics(*summed_areas(self.results), ['mIoU'])
        return float(np.nanmean(ret['IoU']) * 100)
