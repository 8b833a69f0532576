"""MoASE: CoTTA-style mean teacher + Mixture-of-Activation-Sparsity-Experts."""
from typing import Dict, Optional, Sequence

from torch import Tensor

from ..models.adapters.moase import MoASEAdapter
from ..models.ctta_parts import TRAINABLE_MODES, ParamGroup
from ..models.losses.hp_loss import HP_NORMS, hp_loss
from ..registry import METHODS
from ..utils.options import check_choice
from .base import soft_ce_loss, unwrap
from .cotta import CoTTA

TEACHERS = ('cotta', 'single')
STUDENT_LOSSES = ('ce', 'soft_ce')
#: The adapters' Adam learning rate (the paper's segmentation rate).
ADAPTER_LR = 2e-4


@METHODS.register_module()
class MoASE(CoTTA):
    """MoASE (arXiv 2405.16486) for segmentation (docs/method.md).

    The student is the model with MoASE adapters; the EMA teacher
    (``EMATeacherHook``) makes pseudo-labels and the scored prediction.

    Args:
        teacher (str): ``'cotta'`` (default; the segmentation protocol: 14-view
            teacher with the anchor gate, needs the multi-view pipeline) or
            ``'single'`` (the public classification code: the teacher's plain view,
            no anchor).
        loss (str): ``'ce'`` (hard pseudo-label, default) or ``'soft_ce'``
            (cross-entropy against the teacher's probabilities, as the public code).
        hp_mu (float): HP loss weight mu; 0 disables it. Defaults to 1.0.
        hp_norm (str): ``'squared'`` (paper Eq. 5, default) or ``'l2'`` (code).
        trainable (str): ``'all'`` (default, the public code), ``'adapters'`` or
            ``'adapters+norm'``.
        adapter_lr (float): LR of experts and routers. Defaults to
            :data:`ADAPTER_LR` (2e-4).
        base_lr (float): LR of every other trainable parameter. Defaults to
            :data:`ADAPTER_LR`: one Adam group for all parameters at the paper's
            segmentation rate, as the paper and its public code train MoASE.
            ``base_lr`` at CoTTA's rate
            (:data:`~mmseg_moase.methods.cotta.COTTA_LR`, adapters at
            ``adapter_lr``) is the
            ``MoASE-split`` option, the default before the calibrated
            benchmark; it separates what the adapters add from what a 27x
            larger rate on the backbone adds.
        restore_prob (float): Stochastic restore (CoTTA's default; 0 turns it
            off).
        restore_adapters (bool): Whether stochastic restore also resets adapter
            (expert and router) elements to their initial values, as the public
            code does (True, default): an element of a fresh expert's up
            projection then returns to zero after about 1 / restore_prob steps.
            False restores the pre-trained weights only (measured: the adapters'
            output doubles, to 0.18% of the Mix-FFN's, the score is unchanged).
        reset_optimizer_each_pass (bool): Defaults to False (no reset anywhere).
        optim_wrapper (dict, optional): Overrides the optimiser built from the four
            options above (Adam, betas (0.9, 0.99), weight decay 0).
        threshold (float): Anchor gate of the CoTTA-style teacher (CoTTA's
            default).
    """

    #: The optimiser is built from ``base_lr``, ``adapter_lr`` and
    #: ``trainable``: no fixed default to merge a config's over.
    default_optim_wrapper = None
    #: The adapters' two groups: the expert banks and the ASG/DAG gates (the
    #: adapter parts declare ``ctta_param_group``), both at ``adapter_lr``.
    param_groups = (ParamGroup('experts', lr_option='adapter_lr'),
                    ParamGroup('routers', lr_option='adapter_lr'))
    #: CoTTA's step statistics, and the adapters' routing telemetry.
    telemetry_keys = CoTTA.telemetry_keys + ('moase.all.', )
    #: Per expert: its DAG routing weight (solid) and dead-token share (dotted).
    telemetry_panels = (dict(
        pattern=r'^moase\.all\.(?P<series>expert\d+)\.'
        r'(?P<kind>dag_weight|dead_share)$',
        kinds=dict(dag_weight=dict(marker='o', label='DAG weight'),
                   dead_share=dict(ls=':', label='dead tokens')),
        ylabel='share', ylim=(-0.02, 1.02)), )

    def __init__(self, teacher: str = 'cotta', loss: str = 'ce',
                 hp_mu: float = 1.0, hp_norm: str = 'squared',
                 trainable: str = 'all', adapter_lr: float = ADAPTER_LR,
                 base_lr: float = ADAPTER_LR, restore_adapters: bool = True,
                 reset_optimizer_each_pass: bool = False,
                 optim_wrapper: Optional[dict] = None, **kwargs) -> None:
        for name, value, allowed in (('teacher', teacher, TEACHERS),
                                     ('loss', loss, STUDENT_LOSSES),
                                     ('hp_norm', hp_norm, HP_NORMS),
                                     ('trainable', trainable,
                                      TRAINABLE_MODES[:3])):
            check_choice('MoASE', name, value, allowed)
        if optim_wrapper is None:
            optim_wrapper = dict(
                constructor='TrainableGroupsOptimWrapperConstructor',
                optimizer=dict(type='Adam', lr=base_lr, betas=(0.9, 0.99),
                               weight_decay=0),
                paramwise_cfg=dict(
                    trainable=trainable,
                    group_lr=self.group_lr(adapter_lr=adapter_lr)))
        super().__init__(reset_optimizer_each_pass=reset_optimizer_each_pass,
                         multi_view=teacher == 'cotta',
                         optim_wrapper=optim_wrapper, **kwargs)
        self.teacher_mode = teacher
        self.loss = loss
        self.hp_mu = float(hp_mu)
        self.hp_norm = hp_norm
        self.trainable = trainable
        self.restore_adapters = bool(restore_adapters)
        self._adapter_prefixes: tuple = ()

    def setup(self, model) -> None:
        self._adapter_prefixes = tuple(
            f'{n}.' for n, m in unwrap(model).named_modules()
            if isinstance(m, MoASEAdapter))
        super().setup(model)
        if not any(isinstance(m, MoASEAdapter) for m in self.segmentor.modules()):
            raise ValueError(
                'MoASE needs a model with MoASE adapters: use a backbone of type '
                "'MixVisionTransformerMoASE' (configs/_base_/models/"
                'segformer_mit-b*_moase.py).')

    def restores(self, name: str) -> bool:
        return self.restore_adapters or not name.startswith(
            self._adapter_prefixes)

    @property
    def student_uses_probs(self) -> bool:
        """``soft_ce`` reads the teacher's probabilities, ``ce`` its labels."""
        return self.loss == 'soft_ce'

    def student_loss(self, view: dict, labels: Sequence[Tensor],
                     probs: Optional[Sequence[Tensor]]) -> Dict[str, Tensor]:
        if self.loss == 'ce':
            losses = super().student_loss(view, labels, probs)
        else:
            inputs, samples = self.preprocess(self.model, view)
            if self.telemetry:
                self._student_preds = []
            losses = dict(loss_soft_ce=soft_ce_loss(
                self.segmentor, inputs, [s.metainfo for s in samples], probs,
                self._student_preds))
        if self.hp_mu > 0:
            losses['loss_hp'] = hp_loss(self.segmentor, self.teacher, self.hp_mu,
                                        self.hp_norm)
        return losses
