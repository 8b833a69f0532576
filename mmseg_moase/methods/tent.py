"""TENT: test entropy minimisation over the normalisation affine parameters."""
import copy
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample
from ..registry import METHODS
from ..utils.options import check_choice
from .base import BaseCTTAMethod, use_test_batch_stats

TENT_LOSSES = ('entropy', 'self_ce')
#: TENT's Adam learning rate: the source training's 6e-5 over its batch of 8.
TENT_LR = 6e-5 / 8


@METHODS.register_module()
class TENT(BaseCTTAMethod):
    """TENT (Wang et al., ICLR 2021) in the continual setting.

    Only the affine parameters of normalisation layers adapt (all MiT LayerNorms and
    the head's BatchNorm), BatchNorm normalises with test-batch statistics, and the
    scored prediction is the one made *before* the update (from the same forward
    pass that gives the loss). Dropout and drop-path stay off.

    Args:
        loss (str): ``'entropy'`` (TENT's definition, default): mean per-pixel
            Shannon entropy of the softmax; or ``'self_ce'`` (the CoTTA repository's
            TENT): cross-entropy of the training-path logits against the model's
            own argmax.
        optim_wrapper (dict, optional): Defaults to
            :attr:`default_optim_wrapper`: Adam, lr :data:`TENT_LR`, betas
            (0.9, 0.999), on the ``norm`` group only.
    """

    #: Adam at :data:`TENT_LR` on the normalisation affine parameters.
    default_optim_wrapper = dict(
        constructor='TrainableGroupsOptimWrapperConstructor',
        optimizer=dict(type='Adam', lr=TENT_LR, betas=(0.9, 0.999)),
        paramwise_cfg=dict(trainable='norm'))

    def __init__(self, loss: str = 'entropy',
                 optim_wrapper: Optional[dict] = None, **kwargs) -> None:
        check_choice('TENT', 'loss', loss, TENT_LOSSES)
        if optim_wrapper is None:
            optim_wrapper = copy.deepcopy(self.default_optim_wrapper)
        super().__init__(optim_wrapper=optim_wrapper, **kwargs)
        self.loss = loss

    def setup(self, model) -> None:
        model.eval()
        super().setup(model)
        use_test_batch_stats(self.segmentor)

    def step(self, data_batch: dict) -> List[SegDataSample]:
        self._start_step()
        view = self.plain_view(data_batch)
        with torch.enable_grad():
            inputs, samples = self.preprocess(self.model, view)
            metas = [SegDataSample(metainfo=s.metainfo) for s in samples]
            preds = self.segmentor.predict(inputs, metas)
            labels = [p.pred_sem_seg.data.detach() for p in preds]
            if self.loss == 'entropy':
                loss = torch.stack([
                    entropy(p.seg_logits.data).mean() for p in preds]).mean()
            else:
                for m, lab in zip(metas, labels):
                    m.gt_sem_seg = PixelData(data=lab)
                loss = self.segmentor.loss(inputs, metas)['decode.loss_ce']
            self.last_losses = {f'{self.loss}': float(loss.detach())}
            self.update(loss)
        return self.scored(view['data_samples'], labels)


def entropy(logits: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Per-position Shannon entropy of ``softmax(logits)`` along ``dim``."""
    logp = F.log_softmax(logits, dim=dim)
    return -(logp.exp() * logp).sum(dim)
