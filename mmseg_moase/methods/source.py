"""Source: the source model, no adaptation (the lower bound)."""
from typing import List

import torch

from mmseg.structures import SegDataSample
from ..registry import METHODS
from .base import BaseCTTAMethod


@METHODS.register_module()
class Source(BaseCTTAMethod):
    """Score the frozen source model on the plain (scale 1.0, unflipped) view."""

    def setup(self, model) -> None:
        super().setup(model)
        model.eval()
        model.requires_grad_(False)

    @torch.no_grad()
    def step(self, data_batch: dict) -> List[SegDataSample]:
        view = self.plain_view(data_batch)
        preds = self.predict(self.model, view)
        return self.scored(view['data_samples'],
                           [p.pred_sem_seg.data for p in preds])
