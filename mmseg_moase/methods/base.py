"""The interface every continual test-time adaptation method implements."""
import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.structures import PixelData
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg.models.utils import resize
from mmseg.structures import SegDataSample
from ..models.ctta_parts import ParamGroup
from ..models.losses.resized_ce import banded_resized_ce, bandable
from ..utils.dist import average_gradients, is_distributed, world_size


def unwrap(model: nn.Module) -> nn.Module:
    """The segmentor inside a DDP/mmengine model wrapper."""
    return model.module if is_model_wrapper(model) else model


def is_multi_view(data_batch: dict) -> bool:
    """True for a batch from mmseg's ``TestTimeAug`` pipeline (list of views)."""
    inputs = data_batch['inputs']
    return len(inputs) > 0 and isinstance(inputs[0], (list, tuple))


def split_views(data_batch: dict) -> List[dict]:
    """One single-view batch per view of a ``TestTimeAug`` batch."""
    if not is_multi_view(data_batch):
        return [data_batch]
    return [dict(inputs=inp, data_samples=ds)
            for inp, ds in zip(data_batch['inputs'], data_batch['data_samples'])]


def class_argmax(x: Tensor) -> Tensor:
    """``x.argmax(0)`` for class scores (C, H, W), without its slow CPU kernel.

    On CPU, PyTorch's argmax over the leading dimension of a large map is about 3x
    slower than a max over it plus one comparison per class (19 x 512 x 1024:
    180 vs 55 ms). The result is identical, ties included (the first maximal
    class wins); a map with a NaN (NaN counts as the maximum) falls back to
    ``torch.argmax``, and so does any other device.
    """
    if x.device.type != 'cpu':
        return x.argmax(0)
    best = x.amax(0)
    if best.isnan().any():
        return x.argmax(0)
    idx = torch.zeros(x.shape[1:], dtype=torch.long, device=x.device)
    for c in range(x.shape[0] - 1, -1, -1):  # the lowest class is written last
        idx.masked_fill_(x[c] == best, c)
    return idx


def decode_ce_loss(segmentor: nn.Module, inputs: Tensor,
                   labels: Sequence[Tensor], banded: bool = False,
                   preds_out: Optional[List[Tensor]] = None) -> Tensor:
    """``segmentor.loss(inputs, samples)['decode.loss_ce']`` for label maps.

    Computes what mmseg 1.2.2 does for that term (``BaseDecodeHead.loss_by_feat``:
    the head's logits resized to the label size, the optional sampler's weights,
    every ``loss_decode`` named ``loss_ce`` summed), without what a CTTA update
    does not use: the pixel accuracy (a top-k over the classes at label size) and
    auxiliary heads.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder``.
        inputs (Tensor): Preprocessed images (B, 3, H, W).
        labels (Sequence[Tensor]): One (H', W') label map per image.
        banded (bool): Where every term is mmseg's plain softmax
            ``CrossEntropyLoss`` and the head has no sampler, compute it band
            by band (:func:`~mmseg_moase.models.losses.resized_ce.banded_resized_ce`:
            no label-size map of the logits, equal up to float rounding; less
            memory, more time). False: the full-size resize, as mmseg.
            Defaults to False.

    Returns:
        Tensor: The scalar loss.
    """
    head = segmentor.decode_head
    logits = head.forward(segmentor.extract_feat(inputs))
    label = torch.stack(list(labels))[:, None]  # (B, 1, H', W') as mmseg stacks
    terms = head.loss_decode if isinstance(head.loss_decode, nn.ModuleList) \
        else [head.loss_decode]
    terms = [t for t in terms if t.loss_name == 'loss_ce']
    if not terms:
        raise ValueError('the decode head has no loss named loss_ce')
    if banded and all(bandable(t, head.sampler) for t in terms):
        if preds_out is not None:
            with torch.no_grad():
                preds_out.extend(class_argmax(resize(
                    logits[i:i + 1].detach(), size=label.shape[2:],
                    mode='bilinear', align_corners=head.align_corners)[0])
                    for i in range(len(logits)))
        label = label.squeeze(1)
        return sum(banded_resized_ce(logits, label, t, head.ignore_index,
                                     head.align_corners) for t in terms)
    logits = resize(logits, size=label.shape[2:], mode='bilinear',
                    align_corners=head.align_corners)
    if preds_out is not None:
        preds_out.extend(class_argmax(x.detach()) for x in logits)
    weight = None if head.sampler is None else head.sampler.sample(logits, label)
    label = label.squeeze(1)
    return sum(t(logits, label, weight=weight, ignore_index=head.ignore_index)
               for t in terms)


def soft_ce_loss(segmentor: nn.Module, inputs: Tensor, metas: Sequence[dict],
                 probs: Sequence[Tensor],
                 preds_out: Optional[List[Tensor]] = None,
                 logits_out: Optional[List[Tensor]] = None) -> Tensor:
    """Cross-entropy of the student against soft targets, per pixel.

    ``-sum_c p_c * log_softmax(student)_c`` at each target's size (the
    student's ``encode_decode`` logits resized bilinearly), mean over the
    pixels, then over the images: the public MoASE and ViDA codes'
    ``softmax_entropy(student, teacher)`` for segmentation maps.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` (the student).
        inputs (Tensor): Preprocessed images (B, 3, H, W).
        metas (Sequence[dict]): The B images' metainfo.
        probs (Sequence[Tensor]): One (C, H', W') target distribution per image.
        preds_out (list, optional): Receives the student's label maps (H', W').
        logits_out (list, optional): Receives the student's logits at the
            input size (B, C, H, W), detached (MoASE++ reads its policy's
            state from them).

    Returns:
        Tensor: The scalar loss.
    """
    logits = segmentor.encode_decode(inputs, list(metas))
    if logits_out is not None:
        logits_out.append(logits.detach())
    terms = []
    for i, p in enumerate(probs):
        lg = F.interpolate(logits[i:i + 1], size=p.shape[-2:], mode='bilinear',
                           align_corners=False)[0]
        terms.append(-(p * F.log_softmax(lg, dim=0)).sum(0).mean())
        if preds_out is not None:
            preds_out.append(class_argmax(lg.detach()))
    return torch.stack(terms).mean()


def use_test_batch_stats(*models: nn.Module) -> int:
    """Put every BatchNorm of ``models`` in training mode: each forward then
    normalises with its own batch's statistics. Returns how many there are."""
    layers = [m for model in models for m in model.modules()
              if isinstance(m, _BatchNorm)]
    for m in layers:
        m.train()
    return len(layers)


class BaseCTTAMethod:
    """A continual test-time adaptation method run by :class:`CTTALoop`.

    The loop calls, in order: :meth:`setup` once (after the source weights are
    loaded), the hooks' ``before_ctta(runner, method)`` (where a hook may bind
    itself to the method), :meth:`ready`, :meth:`on_pass_start` at every
    (round, domain) pass, then per batch :meth:`step` (predict, adapt; returns
    the scored data samples), the ``after_test_iter`` hooks and
    :meth:`after_step` (:class:`~mmseg_moase.methods.mean_teacher.MeanTeacherMethod`:
    the teacher update, then the restore).
    A method that adapts builds its optimiser from ``optim_wrapper`` with mmengine's
    :func:`build_optim_wrapper`.

    Subclasses implement :meth:`step`. Everything a resumed run needs goes through
    :meth:`state_dict` / :meth:`load_state_dict`.

    On several processes (``--launcher pytorch``) :meth:`update` averages the
    gradients over the ranks before the optimiser step (the segmentor is used
    unwrapped, so mmengine's DDP wrapper synchronises nothing), weighting each
    rank by its share of the step's images (:meth:`set_step_share`), so every
    rank takes the step one process would take on the whole global batch.

    What the generic code (optimiser constructor, EMA hook, telemetry) needs
    of a method it reads from three class attributes, never from the method's
    name: :attr:`param_groups`, :attr:`telemetry_keys` and
    :attr:`telemetry_panels` (and a teacher method's ``ema_momentum``).

    Args:
        optim_wrapper (dict, optional): mmengine optimiser-wrapper config.
        view_index (int, optional): For multi-view (``TestTimeAug``) batches, which
            view is the plain one (scale 1.0, no flip). None (default) finds the
            view whose ``scale_factor`` is 1 and that is not flipped; set it when
            the plain view is itself resized (e.g. 4 for CoTTA's ACDC pipeline,
            whose ratio-1.0 view is a 0.5x resize of the 1920x1080 file). The
            CTTA loop builds the method with the stream's plain view
            (:func:`~mmseg_moase.methods.builder.build_ctta_method`).
        telemetry (bool): Whether the run records telemetry: a method may then
            compute statistics that cost extra (see :meth:`step_stats`). The
            CTTA loop builds the method with its own ``telemetry`` option.
            Defaults to False.
    """

    #: Whether batches come from the stream's multi-view ``tta_pipeline``.
    multi_view = False
    #: Whether the scored prediction is another model's than the adapted one
    #: (a teacher's): the loop then also scores :meth:`student_predictions`.
    scores_teacher = False
    #: The parameter groups the method adapts besides ``norm`` and ``other``
    #: (its adapters'): which modules, the option holding their learning rate,
    #: their EMA momentum. Read by the optimiser constructor, the EMA hook and
    #: the drift telemetry; a subclass inherits them.
    param_groups: Tuple[ParamGroup, ...] = ()
    #: Prefixes of its telemetry entries (step statistics, module telemetry)
    #: shown in the loop's log line, besides ``loss.`` and ``drift.``.
    telemetry_keys: Tuple[str, ...] = ()
    #: Extra panels of the run's telemetry plot (see
    #: :func:`~mmseg_moase.evaluation.telemetry_plot.plot_telemetry`).
    telemetry_panels: Tuple[Dict[str, Any], ...] = ()
    #: The optimiser of a config that gives no ``optim_wrapper``; a config's
    #: partial one is merged over it as over a config base
    #: (:func:`~mmseg_moase.methods.builder.resolve_method_cfg`). None: the
    #: method builds its optimiser from its own options, or adapts nothing by
    #: gradient.
    default_optim_wrapper: Optional[Dict[str, Any]] = None

    def __init__(self, optim_wrapper: Optional[dict] = None,
                 view_index: Optional[int] = None,
                 telemetry: bool = False) -> None:
        self.optim_wrapper_cfg = copy.deepcopy(optim_wrapper)
        self.view_index = view_index
        self.model: Optional[nn.Module] = None
        self.teacher: Optional[nn.Module] = None
        self.optim_wrapper: Optional[OptimWrapper] = None
        self.skipped_updates = 0
        self._share: Optional[Tuple[int, int]] = None
        self.telemetry = bool(telemetry)
        self.last_losses: Dict[str, float] = {}
        self._step_stats: Dict[str, float] = {}
        self._student_preds: Optional[List[Tensor]] = None

    # ----------------------------------------------------------------- set-up
    def setup(self, model: nn.Module) -> None:
        """Take the (source-initialised) model; build teacher, optimiser..."""
        self.model = model
        if self.optim_wrapper_cfg is not None:
            self.optim_wrapper = self.build_optim_wrapper()

    def ready(self) -> None:
        """Raise, naming the fix, if the run lacks something the method needs
        (called after the ``before_ctta`` hooks, before any pass)."""

    def build_optim_wrapper(self) -> OptimWrapper:
        return build_optim_wrapper(unwrap(self.model),
                                   copy.deepcopy(self.optim_wrapper_cfg))

    @classmethod
    def group_lr(cls, **options: float) -> Dict[str, float]:
        """``paramwise_cfg.group_lr`` of the declared groups: each group's
        rate is the value of its ``lr_option`` among ``options`` (the
        method's constructor options); groups without one are left out."""
        return {g.name: options[g.lr_option] for g in cls.param_groups
                if g.lr_option is not None}

    def on_pass_start(self, round_idx: int, domain: str) -> None:
        """Called before the first batch of every (round, domain) pass."""

    @property
    def segmentor(self) -> nn.Module:
        return unwrap(self.model)

    # ------------------------------------------------------------------- step
    def step(self, data_batch: dict) -> List[SegDataSample]:
        """Predict (the scored output) and adapt on one batch."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after the ``after_test_iter`` hooks (mean teacher: the
        teacher update, then the restore)."""

    # -------------------------------------------------------------- telemetry
    def step_stats(self) -> Dict[str, float]:
        """Scalars of the last step, averaged over each pass by the loop.

        The loss terms (``loss.<name>``) and whatever a method adds to
        ``self._step_stats`` during :meth:`step` (e.g. CoTTA's anchor-gate
        share); empty for a step that computed nothing.
        """
        stats = {f'loss.{k}': v for k, v in self.last_losses.items()}
        stats.update(self._step_stats)
        return stats

    def student_predictions(self) -> Optional[List[Tensor]]:
        """The adapted model's own label maps (H, W) of the last step's images,
        before its update, for a method that scores another model
        (:attr:`scores_teacher`); None where it made none."""
        return self._student_preds

    def _start_step(self) -> None:
        """Forget the previous step's statistics and student predictions."""
        self.last_losses = {}
        self._step_stats = {}
        self._student_preds = None

    # ---------------------------------------------------------------- helpers
    def preprocess(self, model: nn.Module, batch: dict,
                   training: bool = False) -> Tuple[Tensor, List[SegDataSample]]:
        data = unwrap(model).data_preprocessor(batch, training)
        return data['inputs'], data['data_samples']

    def plain_index(self, views: Sequence[dict]) -> int:
        """Index of the plain view (scale 1.0, unflipped) among ``views``."""
        if self.view_index is not None:
            if not 0 <= self.view_index < len(views):
                raise ValueError(f'view_index={self.view_index} but the pipeline '
                                 f'gives {len(views)} views')
            return self.view_index
        for k, v in enumerate(views):
            meta = v['data_samples'][0].metainfo
            scale = np.asarray(meta.get('scale_factor', (1.0, 1.0)), float)
            if not meta.get('flip', False) and np.allclose(scale, 1.0):
                return k
        raise ValueError('no view of the multi-view pipeline has scale_factor 1 '
                         'without flip; set the method option `view_index`.')

    def plain_view(self, data_batch: dict) -> dict:
        """The single-view batch to score/adapt on (see :meth:`plain_index`)."""
        views = split_views(data_batch)
        return views[0] if len(views) == 1 else views[self.plain_index(views)]

    def predict(self, model: nn.Module, batch: dict) -> List[SegDataSample]:
        """``model.predict`` on a single-view batch; logits at original size.

        The data samples are copies: the caller's (with the true label) stay as
        they are.
        """
        inputs, samples = self.preprocess(model, batch)
        samples = [SegDataSample(metainfo=s.metainfo) for s in samples]
        return unwrap(model).predict(inputs, samples)

    def set_step_share(self, local: int, total: int) -> None:
        """Images of the coming step on this rank (``local``; 0 for a stand-in
        batch) and on all ranks together (``total``). The CTTA loop calls it
        before every :meth:`step`; it only matters on several processes."""
        if not 0 <= local <= total or total < 1:
            raise ValueError(f'bad step share: {local} of {total} images')
        self._share = (local, total)

    def update(self, loss: Tensor) -> bool:
        """One optimiser step on ``loss``; skipped if the loss or a gradient is
        not finite (the model then stays exactly as before).

        On several processes every rank calls it once per step: the gradients
        are averaged over the ranks (:meth:`_update_distributed`) and the skip
        decision, taken on the averaged gradients, is the same on every rank.

        Returns:
            bool: whether the step was taken.
        """
        if is_distributed():
            return self._update_distributed(loss)
        if not torch.isfinite(loss):
            return self._step_if_finite(False)
        self.optim_wrapper.backward(loss)
        return self._step_if_finite(True)

    def _step_if_finite(self, loss_finite: bool) -> bool:
        """The optimiser step if ``loss_finite`` and every gradient is finite,
        else a skipped update; the gradients are cleared either way."""
        wrapper = self.optim_wrapper
        grads = [p.grad for g in wrapper.optimizer.param_groups
                 for p in g['params'] if p.grad is not None]
        # One host sync for all tensors, not one per tensor.
        if not loss_finite or (grads and not torch.stack(
                [g.isfinite().all() for g in grads]).all()):
            wrapper.zero_grad()
            self.skipped_updates += 1
            return False
        wrapper.step()
        wrapper.zero_grad()
        return True

    def _update_distributed(self, loss: Tensor) -> bool:
        """:meth:`update` on W processes: the step of one process with the
        global batch.

        The methods' losses are means over the images of the batch (per-image
        means over equally many pixels, plus terms that do not depend on the
        images, such as the HP loss). Rank r's loss is scaled by
        ``W * n_r / N`` (``n_r`` of the step's ``N`` images are its own; a
        stand-in has ``n_r = 0``), then :func:`average_gradients` sums the
        ranks' gradients and divides by W: ``sum_r n_r/N * grad(loss_r)``, the
        gradient of the mean over all N images. The scaling also makes
        gradients through synchronised BatchNorm statistics
        (:class:`CTTASyncBatchNorm`, whose backward pass sums over ranks)
        exact. The backward pass runs even for a non-finite loss, so that every
        rank takes part in the same collectives; the step is then skipped on
        all of them.
        """
        wrapper = self.optim_wrapper
        world = world_size()
        local, total = self._share or (1, world)
        finite = bool(torch.isfinite(loss))
        if loss.requires_grad:
            scale = world * local / total
            wrapper.backward(loss if scale == 1 else loss * scale)
        params = [p for g in wrapper.optimizer.param_groups for p in g['params']]
        finite = average_gradients(params, contribute=local > 0,
                                   loss_finite=finite)
        return self._step_if_finite(finite)

    @staticmethod
    def scored(samples: Sequence[SegDataSample],
               preds: Sequence[Tensor]) -> List[SegDataSample]:
        """Attach predictions (H x W label maps) to the loader's data samples."""
        for s, p in zip(samples, preds):
            s.pred_sem_seg = PixelData(data=p.reshape(1, *p.shape[-2:]))
        return list(samples)

    # ------------------------------------------------------------ resumption
    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = dict(
            model=unwrap(self.model).state_dict(),
            skipped_updates=self.skipped_updates)
        if self.teacher is not None:
            state['teacher'] = self.teacher.state_dict()
        if self.optim_wrapper is not None:
            state['optim_wrapper'] = self.optim_wrapper.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state['model'])
        self.skipped_updates = state['skipped_updates']
        if self.teacher is not None:
            self.teacher.load_state_dict(state['teacher'])
        if self.optim_wrapper is not None:
            self.optim_wrapper.load_state_dict(state['optim_wrapper'])
