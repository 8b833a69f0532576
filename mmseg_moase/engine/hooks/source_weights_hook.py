"""Start a training run from source weights and keep what is frozen frozen."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg.registry import HOOKS
from ...models.checkpoints.loading import load_source_checkpoint


@HOOKS.register_module()
class SourceWeightsHook(Hook):
    """Load a source checkpoint before training; keep frozen BatchNorms in eval.

    For training adapters on top of a source model (ViDA's warm-up: the
    backbone frozen, the adapters tuned on the source data). mmengine's
    ``load_from`` takes mmseg 1.x files only; this loads what the CTTA loader
    loads (an NVlabs SegFormer file converted in memory, its LayerNorm
    epsilons, only adapter keys missing) after the runner has initialised the
    model. A BatchNorm whose parameters are all frozen (by the optimiser
    constructor's ``trainable``) keeps its running statistics: it is put back
    in eval mode before every iteration (mmengine's loop calls
    ``model.train()`` each time).

    Args:
        checkpoint (str): The source checkpoint (required; the warm-up tool
            sets it from its command line).
        freeze_bn_stats (bool): Keep frozen BatchNorms' statistics. Default True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: Optional[str] = None,
                 freeze_bn_stats: bool = True) -> None:
        self.checkpoint = checkpoint
        self.freeze_bn_stats = freeze_bn_stats
        self._frozen_bns = []

    def before_train(self, runner) -> None:
        if not self.checkpoint:
            raise ValueError(
                'SourceWeightsHook needs `checkpoint` (the source model): pass '
                'it on the command line of tools/warmup_vida.py')
        model = getattr(runner.model, 'module', runner.model)
        load_source_checkpoint(model, self.checkpoint)
        print_log(f'source weights: {self.checkpoint}', logger='current')
        if self.freeze_bn_stats:
            self._frozen_bns = [
                m for m in model.modules() if isinstance(m, _BatchNorm)
                and not any(p.requires_grad for p in m.parameters())]

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        for m in self._frozen_bns:
            m.eval()
