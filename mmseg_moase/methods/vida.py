"""ViDA (Liu et al., ICLR 2024) for segmentation: mean teacher + homeostatic
visual domain adapters; our port of its public classification code
(docs/method.md)."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmseg.structures import SegDataSample
from torch import Tensor

from ..models.adapters.vida import ViDAAttentionAdapter
from ..models.ctta_parts import ParamGroup
from ..registry import METHODS
from ..utils.options import check_choice
from .base import class_argmax, soft_ce_loss, split_views
from .cotta import COTTA_LR, CoTTA
from .moase import ADAPTER_LR

UNCERTAINTY_OUTPUTS = ('logits', 'softmax')
SCALE_RULES = ('intended', 'released')


def hka_scales(uncertainty: float, threshold: float, scale_low: float,
               scale_high: float, rule: str = 'intended'
               ) -> Tuple[float, float]:
    """Homeostatic knowledge allotment: the branch scales for an uncertainty.

    ``u >= threshold``: ``s_high = 1 + u``, ``s_low = 1 - u`` (an uncertain,
    shifted input leans on the high-rank, domain-specific branch); else
    ``s_low = 1 + u``, ``s_high = 1 - u``. The released ``set_scale`` walks the
    modules with ``if hasattr(scale1) ... elif hasattr(scale2)``: every
    adapter has ``scale1``, so only the low-rank scale is ever set and the
    high-rank one keeps its value (``rule='released'``).

    Args:
        uncertainty (float): ``u`` (see :func:`view_uncertainty`).
        threshold (float): The released runs' 0.05.
        scale_low (float): The current low-rank scale.
        scale_high (float): The current high-rank scale.
        rule (str): ``'intended'`` (default) or ``'released'``.

    Returns:
        tuple: ``(scale_low, scale_high)``.
    """
    u = float(uncertainty)
    low, high = (1 - u, 1 + u) if u >= threshold else (1 + u, 1 - u)
    return (low, scale_high) if rule == 'released' else (low, high)


def view_uncertainty(outputs: Sequence[Sequence[Tensor]]) -> float:
    """ViDA's uncertainty: 0.1 x the mean over images, classes and pixels of
    the variance across views (unbiased, as ``torch.var``) of the outputs.

    Args:
        outputs: Per view, per image, (C, H, W) maps of one size per image.
            Accumulated view by view (Welford), never stacked.
    """
    count = 0
    mean: List[Tensor] = []
    m2: List[Tensor] = []
    for per_image in outputs:
        count += 1
        if not mean:
            mean = [x.clone() for x in per_image]
            m2 = [torch.zeros_like(x) for x in per_image]
            continue
        for mu, acc, x in zip(mean, m2, per_image):
            delta = x - mu
            mu.add_(delta / count)
            acc.add_(delta * (x - mu))
    if count < 2:
        raise ValueError('the uncertainty needs at least two views')
    return 0.1 * float(torch.stack([(a / (count - 1)).mean() for a in m2]).mean())


@METHODS.register_module()
class ViDA(CoTTA):
    """ViDA: an EMA teacher, low- and high-rank adapters on every attention
    projection (``MixVisionTransformerViDA``) and homeostatic knowledge
    allotment (HKA) of their scales.

    Per batch: the teacher predicts the views of the stream's multi-view
    pipeline (CoTTA's 14, or ``hka_views`` of them drawn at random) with the
    current scales; their variance gives the uncertainty ``u`` that sets the
    scales of student and teacher (:func:`hka_scales`); the teacher then
    predicts the plain view with the new scales: its argmax is the scored
    output, its softmax the student's soft target (``soft_ce``). The
    ``EMATeacherHook`` updates the teacher (the released code keeps one rate
    for the adapters and one for the rest, both 0.999: the hook's
    ``group_momentum.vida`` sets the adapters' own), then stochastic restore
    resets each trainable element (adapters included) to its starting value
    with ``restore_prob``.

    Args:
        uncertainty_threshold (float): HKA threshold. Defaults to 0.05 (the
            released runs' command-line value; the constructor's 0.2 is
            overridden there).
        uncertainty_from (str): ``'logits'`` (default, as released) or
            ``'softmax'``: what the variance across views is taken of.
        scale_rule (str): ``'intended'`` (default) or ``'released'`` (the
            released ``elif`` that never sets the high-rank scale).
        hka_views (int, optional): Draw this many of the pipeline's views per
            step for the uncertainty (at least 2); None (default) uses all.
        trainable (str): ``'all'`` (default, as released: every weight plus
            the adapters), ``'adapters'`` or ``'adapters+norm'``.
        lr (float): Adam LR of every trainable parameter outside the adapters.
            Defaults to CoTTA's (:data:`~.cotta.COTTA_LR`, the segmentation
            framework ViDA's README points to; no segmentation code of ViDA
            exists).
        adapter_lr (float): LR of the adapters. Defaults to MoASE's adapter
            rate (:data:`~.moase.ADAPTER_LR`, for a like-for-like comparison;
            the released CIFAR configs use 1e-4 for the model and 1e-5 for the
            adapters).
        restore_prob (float): Stochastic restore. Defaults to CoTTA's (the
            released CIFAR code runs 0.1, its config value never passed).
        reset_optimizer_each_pass (bool): Defaults to False (as released).
        optim_wrapper (dict, optional): Overrides the optimiser built from
            ``trainable``, ``lr`` and ``adapter_lr`` (Adam, betas (0.9, 0.999),
            weight decay 0, as released).
        **kwargs: ``bn_stats``, ``batch_views``, ``view_index`` of
            :class:`CoTTA`.
    """

    uses_anchor = False
    #: The optimiser is built from ``lr``, ``adapter_lr`` and ``trainable``:
    #: no fixed default to merge a config's over.
    default_optim_wrapper = None
    #: The adapters (``ctta_param_group = 'vida'``) at ``adapter_lr``.
    param_groups = (ParamGroup('vida', lr_option='adapter_lr'), )
    #: CoTTA's step statistics and HKA's.
    telemetry_keys = CoTTA.telemetry_keys + ('hka.', )

    def __init__(self, uncertainty_threshold: float = 0.05,
                 uncertainty_from: str = 'logits', scale_rule: str = 'intended',
                 hka_views: Optional[int] = None, trainable: str = 'all',
                 lr: float = COTTA_LR, adapter_lr: float = ADAPTER_LR,
                 reset_optimizer_each_pass: bool = False,
                 optim_wrapper: Optional[dict] = None, **kwargs) -> None:
        check_choice('ViDA', 'uncertainty_from', uncertainty_from,
                     UNCERTAINTY_OUTPUTS)
        check_choice('ViDA', 'scale_rule', scale_rule, SCALE_RULES)
        check_choice('ViDA', 'trainable', trainable,
                     ('all', 'adapters', 'adapters+norm'))
        if hka_views is not None and hka_views < 2:
            raise ValueError(f'ViDA `hka_views` must be None or >= 2, got '
                             f'{hka_views}')
        if optim_wrapper is None:
            optim_wrapper = dict(
                constructor='TrainableGroupsOptimWrapperConstructor',
                optimizer=dict(type='Adam', lr=lr, betas=(0.9, 0.999),
                               weight_decay=0),
                paramwise_cfg=dict(trainable=trainable,
                                   group_lr=self.group_lr(
                                       adapter_lr=adapter_lr)))
        super().__init__(reset_optimizer_each_pass=reset_optimizer_each_pass,
                         multi_view=True, optim_wrapper=optim_wrapper,
                         **kwargs)
        self.uncertainty_threshold = float(uncertainty_threshold)
        self.uncertainty_from = uncertainty_from
        self.scale_rule = scale_rule
        self.hka_views = hka_views
        self.scales = (1.0, 1.0)
        self._all_adapters: List[ViDAAttentionAdapter] = []

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        self._all_adapters = [m for seg in (self.segmentor, self.teacher)
                              for m in self._adapters(seg)]
        if not self._adapters(self.segmentor):
            raise ValueError(
                'ViDA needs a model with ViDA adapters: use a backbone of type '
                "'MixVisionTransformerViDA' (configs/_base_/models/"
                'vida_adapter.py).')
        self._set_scales(*self.scales)

    @staticmethod
    def _adapters(model: nn.Module) -> List[ViDAAttentionAdapter]:
        return [m for m in model.modules()
                if isinstance(m, ViDAAttentionAdapter)]

    def _set_scales(self, low: float, high: float) -> None:
        self.scales = (float(low), float(high))
        for m in self._all_adapters:  # student's and teacher's
            m.scale_low, m.scale_high = self.scales

    @torch.no_grad()
    def uncertainty(self, views: Sequence[dict]) -> float:
        """:func:`view_uncertainty` of the teacher over the (drawn) views."""
        if self.hka_views is not None and self.hka_views < len(views):
            pick = torch.randperm(len(views))[:self.hka_views].sort().values
            views = [views[int(k)] for k in pick]
        softmax = self.uncertainty_from == 'softmax'
        return view_uncertainty(
            out for _, out in self._view_probs(self.teacher, views, softmax))

    def step(self, data_batch: dict) -> List[SegDataSample]:
        self._start_step()
        views = split_views(data_batch)
        if len(views) < 2:
            raise ValueError(
                "ViDA's HKA needs the multi-view test pipeline (mmseg's "
                'TestTimeAug, e.g. the `tta_pipeline` of the stream configs); '
                'got a single-view batch.')
        u = self.uncertainty(views)
        self._set_scales(*hka_scales(u, self.uncertainty_threshold,
                                     *self.scales, rule=self.scale_rule))
        view = self.plain_view(data_batch)
        with torch.no_grad():
            logits = self._logits(self.teacher, view)
        labels = [class_argmax(x) for x in logits]
        probs = [x.softmax(0) for x in logits]
        del logits
        if self.telemetry:
            self._step_stats.update({
                'hka.uncertainty': u, 'hka.scale_low': self.scales[0],
                'hka.scale_high': self.scales[1],
                'hka.high_rank_share': float(u >= self.uncertainty_threshold)})
            self._student_preds = []
        inputs, samples = self.preprocess(self.model, view)
        with torch.enable_grad():
            loss = soft_ce_loss(self.segmentor, inputs,
                                [s.metainfo for s in samples], probs,
                                self._student_preds)
            self.last_losses = dict(loss_soft_ce=float(loss.detach()))
            self.update(loss)
        return self.scored(view['data_samples'], labels)

    # ------------------------------------------------------------ resumption
    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state['vida_scales'] = list(self.scales)
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._set_scales(*state['vida_scales'])
