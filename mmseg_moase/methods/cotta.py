"""CoTTA: continual test-time adaptation with an augmentation-averaged EMA teacher."""
import copy
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmseg.models.utils import resize
from mmseg.structures import SegDataSample
from ..models.ctta_parts import batch_groups
from ..registry import METHODS
from ..utils.options import check_choice
from .base import (class_argmax, decode_ce_loss, split_views, unwrap,
                   use_test_batch_stats)
from .mean_teacher import MeanTeacherMethod


BN_STATS = ('eval', 'test_batch')
#: CoTTA's Adam learning rate for the pre-trained weights (segmentation).
COTTA_LR = 7.5e-6


def stochastic_restore(params: Sequence[Tensor], sources: Sequence[Tensor],
                       prob: float) -> None:
    """Reset each element of each tensor to its source value with ``prob``.

    ``prob=1`` restores everything, ``prob=0`` nothing (``torch.rand`` is in [0, 1)).
    Draws from torch's global generator, so a fixed seed fixes the masks.
    """
    if prob <= 0:
        return
    with torch.no_grad():
        for p, s in zip(params, sources):
            mask = torch.rand(p.shape, device=p.device) < prob
            p.copy_(torch.where(mask, s, p))


def gated_pseudo_label(plain_prob: Tensor, mean_prob: Tensor,
                       anchor_prob: Tensor, threshold: float) -> Tensor:
    """CoTTA's pseudo-label for one image.

    Where the frozen anchor is confident on the plain view (max softmax prob >
    ``threshold``) take the teacher's plain-view argmax, elsewhere the argmax of the
    teacher's softmax averaged over all views.

    Args:
        plain_prob: Teacher softmax on the plain view (scale 1.0, unflipped),
            (C, H, W) at the label size.
        mean_prob: Teacher softmax averaged over all views (C, H, W).
        anchor_prob: Anchor softmax on the plain view (C, H, W).
        threshold: Confidence threshold (0.69 in CoTTA).

    Returns:
        Tensor: The pseudo-label (H, W).
    """
    confident = anchor_prob.amax(0) > threshold
    return torch.where(confident, class_argmax(plain_prob),
                       class_argmax(mean_prob))


def label_size_logits(segmentor: nn.Module, logits: Tensor,
                      metas: Sequence[dict]) -> List[Tensor]:
    """Per-image logits at label size: mmseg's ``postprocess_result``, no argmax.

    Removes the padding, undoes the flip and resizes to ``ori_shape`` exactly as
    ``BaseSegmentor.postprocess_result`` (mmseg 1.2.2) does, without the argmax it
    also computes, which a teacher averaging softmaxes over views does not use.

    Args:
        segmentor (nn.Module): The mmseg segmentor (for ``align_corners``).
        logits (Tensor): ``segmentor.inference`` output (B, C, H, W).
        metas (Sequence[dict]): The B images' metainfo.

    Returns:
        list[Tensor]: (C, H', W') per image, H' x W' = ``ori_shape``.
    """
    h, w = logits.shape[-2:]
    out = []
    for i, meta in enumerate(metas):
        left, right, top, bottom = meta.get(
            'img_padding_size', meta.get('padding_size', [0] * 4))
        x = logits[i:i + 1, :, top:h - bottom, left:w - right]
        if meta.get('flip', None):
            x = x.flip(dims=(3, ) if meta.get('flip_direction') == 'horizontal'
                       else (2, ))
        out.append(resize(x, size=meta['ori_shape'], mode='bilinear',
                          align_corners=segmentor.align_corners,
                          warning=False).squeeze(0))
    return out


def segmentor_inference(segmentor: nn.Module, inputs: Tensor,
                        metas: Sequence[dict]) -> Tensor:
    """``segmentor.inference``, with a one-window slide inference run directly.

    mmseg's slide inference of an input no larger than its crop runs one window
    over the whole input and still allocates, pads, sums and divides two maps of
    the input's size (the logits and a window count of 1). This runs that window
    as slide inference does (``img_shape`` set to the window's size) and returns
    its logits: equal, the sum and the division by one being exact.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder``.
        inputs (Tensor): Preprocessed images (B, 3, H, W).
        metas (Sequence[dict]): The B images' metainfo (modified as mmseg does).

    Returns:
        Tensor: Logits (B, C, H, W) at the input size.
    """
    cfg = segmentor.test_cfg
    if cfg.get('mode', 'whole') == 'slide':
        h_crop, w_crop = cfg['crop_size']
        if inputs.shape[2] <= h_crop and inputs.shape[3] <= w_crop:
            metas[0]['img_shape'] = inputs.shape[2:]
            return segmentor.encode_decode(inputs, metas)
    return segmentor.inference(inputs, metas)


def same_size_groups(views: Sequence[dict]) -> List[List[int]]:
    """Indices of views whose inputs have one size (a flip pair), in view order."""
    groups: Dict[Tuple, List[int]] = {}
    for k, v in enumerate(views):
        key = tuple(tuple(x.shape) for x in v['inputs'])
        groups.setdefault(key, []).append(k)
    return list(groups.values())


@METHODS.register_module()
class CoTTA(MeanTeacherMethod):
    """CoTTA (Wang et al., CVPR 2022) as in its released segmentation code.

    Per batch: the EMA teacher predicts every view of the ``TestTimeAug`` pipeline
    (CoTTA: 7 scales x flip = 14) and averages their softmax at label size; where
    the frozen source *anchor* is confident on the plain view the teacher's
    plain-view argmax is used instead. That map is both the pseudo-label and the
    scored output. The student takes one Adam step of cross-entropy on the plain
    view; then (:class:`MeanTeacherMethod`'s order) the ``EMATeacherHook``'s
    update of the teacher and the restore of each trainable element to its
    source value with probability ``restore_prob``.

    Cost (what the released code computes, without its waste): the anchor runs on
    the plain view only (the released code runs it on all 14 and uses one); the
    teacher's views skip the argmax of mmseg's ``predict`` and their softmaxes are
    summed as they come instead of stacked, and a view that fits mmseg's slide
    window skips its window bookkeeping; the anchor's tensors double as the
    restore sources; the student's loss skips mmseg's pixel accuracy. A teacher of
    one view (``multi_view=False``) needs no anchor: with one view the gate picks
    the same argmax either way.

    Args:
        threshold (float): Anchor confidence gate. Defaults to 0.69.
        restore_prob (float): Stochastic-restore probability. Defaults to 0.01.
        reset_optimizer_each_pass (bool): Re-create the optimiser (fresh Adam
            moments) at every domain pass, as the released code does. Default True.
        multi_view (bool): Require the multi-view pipeline (True) or run the
            teacher on the plain view only (False, for ablations).
        batch_views (bool): Run the teacher's views of one input size (the
            unflipped and flipped view of a scale) as one batch. Equal to one
            forward per view up to float rounding (batched matmuls may accumulate
            in another order); MoASE adapters keep one set of ASG keep ratios per
            view (:func:`~mmseg_moase.models.ctta_parts.batch_groups`).
            Defaults to False: on CPU, where the
            forward is compute-bound, it measured no faster.
        banded_loss (bool): Compute the student's cross-entropy in
            checkpointed row bands of the label
            (:func:`~mmseg_moase.models.losses.resized_ce.banded_resized_ce`)
            instead of on the full label-size map: no label-size map of the
            logits is kept for the backward (-93 MiB, a quarter of the peak,
            for MoASE's one-view teacher with MiT-B0 at 256x512 scored at
            512x1024), at the price of recomputing each band in the backward
            (+0.10 to +0.17 s per step there, on one CPU thread). Equal up to float
            rounding. Applies to mmseg's plain softmax ``CrossEntropyLoss``
            without sampler (other losses take the full-size path). Defaults
            to False.
        bn_stats (str): What the student's and the teacher's BatchNorm layers
            (SegFormer: the decode head's) normalise with. ``'eval'`` (default,
            as the released CoTTA code: the source model's running statistics)
            or ``'test_batch'``: each forward's own batch statistics, as
            NormStat (an extension; the anchor keeps the source statistics).
        optim_wrapper (dict, optional): Defaults to
            :attr:`default_optim_wrapper`: Adam lr :data:`COTTA_LR`, betas
            (0.9, 0.999), all parameters.
        view_index (int, optional): The plain view in the pipeline's view list
            (default: found from the views' scale factor and flip).
    """

    #: Whether the multi-view teacher's pseudo-label is gated by a frozen
    #: source anchor (CoTTA's); a subclass without it restores from a copy.
    uses_anchor = True
    #: Its step statistics shown in the log (the anchor gate, the pseudo-label).
    telemetry_keys = ('gate.', 'pseudo_label.')

    #: Adam at :data:`COTTA_LR` on every parameter, as released.
    default_optim_wrapper = dict(
        constructor='TrainableGroupsOptimWrapperConstructor',
        optimizer=dict(type='Adam', lr=COTTA_LR, betas=(0.9, 0.999)),
        paramwise_cfg=dict(trainable='all'))

    def __init__(self, threshold: float = 0.69, restore_prob: float = 0.01,
                 reset_optimizer_each_pass: bool = True, multi_view: bool = True,
                 batch_views: bool = False, banded_loss: bool = False,
                 bn_stats: str = 'eval',
                 optim_wrapper: Optional[dict] = None, **kwargs) -> None:
        if optim_wrapper is None:
            optim_wrapper = copy.deepcopy(self.default_optim_wrapper)
        super().__init__(optim_wrapper=optim_wrapper, **kwargs)
        if not 0.0 <= restore_prob <= 1.0:
            raise ValueError(f'`restore_prob` must lie in [0, 1], got {restore_prob}')
        self.threshold = float(threshold)
        self.restore_prob = float(restore_prob)
        self.reset_optimizer_each_pass = reset_optimizer_each_pass
        self.multi_view = multi_view
        self.batch_views = bool(batch_views)
        self.banded_loss = bool(banded_loss)
        check_choice(type(self).__name__, 'bn_stats', bn_stats, BN_STATS)
        self.bn_stats = bn_stats
        self.anchor: Optional[nn.Module] = None
        self._restore_params: List[Tensor] = []
        self._restore_sources: List[Tensor] = []

    def setup(self, model: nn.Module) -> None:
        model.eval()
        # The optimiser (which sets requires_grad), then the teacher.
        super().setup(model)
        seg = self.segmentor
        trainable = [(n, p) for n, p in seg.named_parameters()
                     if p.requires_grad and self.restores(n)]
        self._restore_params = [p for _, p in trainable]
        if self.multi_view and self.uses_anchor:
            # The anchor is a frozen copy of the source model, so its tensors are
            # the restore sources too: no second copy of the source weights.
            self.anchor = self.frozen_copy(seg)
            source = dict(self.anchor.named_parameters())
            self._restore_sources = [source[n] for n, _ in trainable]
        else:
            self.anchor = None
            self._restore_sources = [p.detach().clone() for _, p in trainable]
        if self.bn_stats == 'test_batch':
            use_test_batch_stats(seg, self.teacher)

    def restores(self, name: str) -> bool:
        """Whether stochastic restore covers the trainable parameter ``name``
        (every one here; MoASE can leave its adapters out)."""
        return True

    def on_pass_start(self, round_idx: int, domain: str) -> None:
        super().on_pass_start(round_idx, domain)
        if self.reset_optimizer_each_pass and self.optim_wrapper is not None:
            self.optim_wrapper = self.build_optim_wrapper()

    # ---------------------------------------------------------------- teacher
    def _logits(self, model: nn.Module, batch: dict) -> List[Tensor]:
        """Logits (C, H, W) at label size of ``model`` for every image of
        ``batch``: ``predict``'s ``seg_logits``."""
        inputs, samples = self.preprocess(model, batch)
        metas = [s.metainfo for s in samples]
        seg = unwrap(model)
        return label_size_logits(seg, segmentor_inference(seg, inputs, metas),
                                 metas)

    def _probs(self, model: nn.Module, batch: dict) -> List[Tensor]:
        """Softmax (C, H, W) at label size of ``model`` for every image."""
        return [x.softmax(0) for x in self._logits(model, batch)]

    def _view_probs(self, model: nn.Module, views: Sequence[dict],
                    softmax: bool = True
                    ) -> Iterator[Tuple[int, List[Tensor]]]:
        """``(view index, per-image softmax)`` for every view, in view order
        within each group of views that share a forward (``batch_views``);
        the logits at label size with ``softmax=False``."""
        if self.batch_views:
            groups = same_size_groups(views)
        else:
            groups = [[k] for k in range(len(views))]
        for group in groups:
            batch = dict(
                inputs=[x for k in group for x in views[k]['inputs']],
                data_samples=[s for k in group for s in views[k]['data_samples']])
            with batch_groups(model, len(group)):
                probs = (self._probs if softmax else self._logits)(model, batch)
            n = len(views[group[0]]['inputs'])
            for j, k in enumerate(group):
                yield k, probs[j * n:(j + 1) * n]

    @torch.no_grad()
    def teacher_pseudo_labels(self, data_batch: dict
                              ) -> Tuple[List[Tensor], Optional[List[Tensor]]]:
        """Pseudo-labels (H, W) and mean teacher probabilities (C, H, W) per image.

        A one-view teacher computes the probabilities only if the student's loss
        reads them (:attr:`student_uses_probs`; None otherwise) and takes the
        labels from the logits. That is the argmax of the softmax except where
        the softmax rounds two top logits about one float32 step apart to one
        value (its argmax then picks the lower class).
        """
        views = split_views(data_batch)
        if self.multi_view and len(views) == 1:
            raise ValueError(
                f'{type(self).__name__} with multi_view=True needs the multi-view '
                'test pipeline, but got a single-view batch: set '
                "`ctta_stream.tta_pipeline` to mmseg's TestTimeAug with several "
                'views (as every stream under configs/_base_/streams/ does), '
                'or set '
                "multi_view=False (MoASE: teacher='single') to run the teacher "
                'on the plain view only.')
        if not self.multi_view:
            logits = self._logits(self.teacher, self.plain_view(data_batch))
            labels = [class_argmax(x) for x in logits]
            if not self.student_uses_probs:
                return labels, None
            return labels, [x.softmax(0) for x in logits]
        plain = self.plain_index(views)
        sums: List[Tensor] = []
        plain_probs: List[Tensor] = []
        for k, probs in self._view_probs(self.teacher, views):
            if k == plain:
                plain_probs = probs
            if not sums:  # the first view starts the sums (a copy if kept)
                sums = [p.clone() if k == plain else p for p in probs]
            else:
                for total, p in zip(sums, probs):
                    total.add_(p)
        means = [total.div_(len(views)) for total in sums]
        anchor = self._probs(self.anchor, views[plain])
        labels = [gated_pseudo_label(p, m, a, self.threshold)
                  for p, m, a in zip(plain_probs, means, anchor)]
        if self.telemetry:
            self._step_stats['gate.plain_share'] = float(torch.stack(
                [(a.amax(0) > self.threshold).float().mean()
                 for a in anchor]).mean())
            self._step_stats['pseudo_label.source_agreement'] = float(
                torch.stack([(lb == class_argmax(a)).float().mean()
                             for lb, a in zip(labels, anchor)]).mean())
        return labels, means

    # ---------------------------------------------------------------- student
    @property
    def student_uses_probs(self) -> bool:
        """Whether :meth:`student_loss` reads the teacher's probabilities."""
        return False

    def student_loss(self, view: dict, labels: Sequence[Tensor],
                     probs: Optional[Sequence[Tensor]]) -> Dict[str, Tensor]:
        """Cross-entropy of the student on ``view`` against the pseudo-labels."""
        inputs, _ = self.preprocess(self.model, view)
        if self.telemetry:
            self._student_preds = []
        return dict(loss_ce=decode_ce_loss(self.segmentor, inputs, labels,
                                           banded=self.banded_loss,
                                           preds_out=self._student_preds))

    def step(self, data_batch: dict) -> List[SegDataSample]:
        self._start_step()
        labels, probs = self.teacher_pseudo_labels(data_batch)
        if not self.student_uses_probs:
            probs = None  # free the C x H x W maps before the student's forward
        view = self.plain_view(data_batch)
        with torch.enable_grad():
            losses = self.student_loss(view, labels, probs)
            self.last_losses = {k: float(v.detach()) for k, v in losses.items()}
            self.update(sum(losses.values()))
        return self.scored(view['data_samples'], labels)

    def restore(self) -> None:
        stochastic_restore(self._restore_params, self._restore_sources,
                           self.restore_prob)
