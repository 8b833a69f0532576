"""NormStat ("BN adapt"): normalise with the statistics of the test batch."""
from typing import List

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg.structures import SegDataSample
from ..registry import METHODS
from .base import BaseCTTAMethod


@METHODS.register_module()
class NormStat(BaseCTTAMethod):
    """Test-time normalisation statistics, no parameter update.

    Every BatchNorm layer normalises each test batch with that batch's own mean and
    variance instead of the running statistics from source training (Schneider et
    al. 2020; "BN adapt" in the CoTTA paper). Nothing else changes.

    What this means for SegFormer: the MiT backbone normalises with LayerNorm, which
    has no running statistics and already uses per-token statistics at any time, so
    the backbone is untouched; only the decode head's BatchNorm (the fuse layer,
    ``SyncBN`` in mmseg's configs) switches to test-batch statistics. With batch size
    1 and slide inference, the statistics are those of each window.
    """

    def setup(self, model) -> None:
        super().setup(model)
        model.eval()
        model.requires_grad_(False)
        self.num_norm_layers = 0
        for m in self.segmentor.modules():
            if isinstance(m, _BatchNorm):
                m.train()
                self.num_norm_layers += 1

    @torch.no_grad()
    def step(self, data_batch: dict) -> List[SegDataSample]:
        view = self.plain_view(data_batch)
        preds = self.predict(self.model, view)
        return self.scored(view['data_samples'],
                           [p.pred_sem_seg.data for p in preds])
