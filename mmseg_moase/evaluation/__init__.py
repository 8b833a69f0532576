from .ctta_iou_metric import CTTAIoUMetric, summed_areas
from .results import CTTAResults, atomic_write_text

__all__ = ['CTTAIoUMetric', 'CTTAResults', 'atomic_write_text', 'summed_areas']
