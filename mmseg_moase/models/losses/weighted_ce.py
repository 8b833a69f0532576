"""Class-weighted cross-entropy that tolerates the ignore label."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseg.registry import MODELS


@MODELS.register_module()
class WeightedCrossEntropyLoss(nn.Module):
    """Cross-entropy with per-class weights: PyTorch's weighted mean over the
    pixels that are not ``ignore_index``.

    mmseg 1.2.2's ``CrossEntropyLoss(class_weight=...)`` indexes the weight vector
    with every label value, the ignore label 255 included, and fails with an
    ``IndexError``; this loss is its drop-in replacement for that case.

    Args:
        class_weight (Sequence[float]): One weight per class.
        loss_weight (float): Scale of the loss. Defaults to 1.0.
        loss_name (str): Name in the loss dict. Defaults to ``'loss_ce'``.
    """

    def __init__(self, class_weight: Sequence[float], loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce') -> None:
        super().__init__()
        self.register_buffer('class_weight',
                             torch.tensor(list(class_weight), dtype=torch.float),
                             persistent=False)  # not a weight: keep it out of checkpoints
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self, cls_score: Tensor, label: Tensor,
                weight: Optional[Tensor] = None, ignore_index: int = 255,
                **kwargs) -> Tensor:
        if weight is not None:
            raise ValueError('WeightedCrossEntropyLoss does not take per-pixel '
                             'weights (a pixel sampler); use class weights only')
        if cls_score.shape[1] != self.class_weight.numel():
            raise ValueError(f'{self.class_weight.numel()} class weights for '
                             f'{cls_score.shape[1]} classes')
        return self.loss_weight * F.cross_entropy(
            cls_score, label, weight=self.class_weight.to(cls_score),
            ignore_index=ignore_index)
