"""Cross-entropy of upsampled logits, in row bands, without the full-size maps.

mmseg's decode-head loss upsamples the head's logits (1/4 of the input) to the
label's size and takes the cross-entropy there. For a CTTA update on a
960x540 view scored at 1080x1920 that is a 19 x 1080 x 1920 float map (150 MiB),
its log-softmax (another 150 MiB) kept for the backward, and two more of each
size in the backward: the largest tensors of the update, larger than the model's
own activations. :func:`banded_resized_ce` computes the same loss band by band
(a band: the label rows whose bilinear sources lie in a few rows of the
logits), each band under activation checkpointing, so that at most one band's
maps exist at a time, forward or backward; the backward recomputes each band's
upsampling and log-softmax (measured on one CPU thread for 19 x 512 x 1024: the
loss with its backward takes about 1.4x the time of the full-size one).

Equal to mmseg's ``resize`` + ``CrossEntropyLoss`` up to float rounding: the
vertical bilinear weights are PyTorch's (``align_corners`` both ways), applied
to the logits' rows first; the horizontal step is PyTorch's own resize; the
per-band sums are added in another order.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmseg.models.losses import CrossEntropyLoss

#: Label pixels x classes per band (about 4 MiB of float32 per band map).
DEFAULT_BAND_ELEMENTS = 1 << 20


def bilinear_source(in_size: int, out_size: int, align_corners: bool,
                    device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    """Source indices and weight of PyTorch's bilinear resize along one axis.

    Output position ``o`` is ``(1 - lam[o]) * x[i0[o]] + lam[o] * x[i1[o]]``,
    with PyTorch's source-index rule for a size-given resize
    (``area_pixel_compute_source_index``).

    Returns:
        tuple: ``i0``, ``i1`` (long, ``out_size``) and ``lam`` (float32).
    """
    dst = torch.arange(out_size, dtype=torch.float32, device=device)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp_(min=0)
    i0 = src.floor().long().clamp_(max=in_size - 1)
    i1 = (i0 + 1).clamp_(max=in_size - 1)
    return i0, i1, src - i0


def bandable(loss_term: nn.Module, sampler) -> bool:
    """Whether :func:`banded_resized_ce` computes ``loss_term``: mmseg's softmax
    ``CrossEntropyLoss`` without class weights or mask, and no pixel sampler."""
    return (sampler is None and type(loss_term) is CrossEntropyLoss
            and not loss_term.use_sigmoid and not loss_term.use_mask
            and loss_term.class_weight is None
            and loss_term.reduction == 'mean')


def _band_loss(logits: Tensor, label: Tensor, i0: Tensor, i1: Tensor,
               lam_h: Tensor, loss_term: nn.Module, ignore_index: int,
               align_corners: bool) -> Tensor:
    """One band's summed loss: the band's rows interpolated from their two
    source rows, then PyTorch's bilinear resize of those rows to the label's
    width (its vertical step maps each row onto itself: weight 1, exactly)."""
    lam_h = lam_h[:, None]
    rows = (logits.index_select(2, i0) * (1 - lam_h) +
            logits.index_select(2, i1) * lam_h)
    band = F.interpolate(rows, size=tuple(label.shape[-2:]), mode='bilinear',
                         align_corners=align_corners)
    return loss_term(band, label, ignore_index=ignore_index,
                     reduction_override='sum')


def banded_resized_ce(logits: Tensor, label: Tensor, loss_term: nn.Module,
                      ignore_index: int, align_corners: bool,
                      band_elements: Optional[int] = None) -> Tensor:
    """``loss_term(resize(logits, label size), label)``, band by band.

    Args:
        logits (Tensor): Head logits ``(B, C, h, w)``.
        label (Tensor): Labels ``(B, H, W)`` (long).
        loss_term (nn.Module): An mmseg ``CrossEntropyLoss`` (see
            :func:`bandable`).
        ignore_index (int): The label value that counts for nothing.
        align_corners (bool): ``align_corners`` of the bilinear resize.
        band_elements (int, optional): Label pixels x classes per band.

    Returns:
        Tensor: The scalar loss, as mmseg computes it (the sum over pixels
        divided by their number, or by the non-ignored ones with
        ``avg_non_ignore``, plus float32 eps; times ``loss_weight``).
    """
    b, c, h, _ = logits.shape
    big_h, big_w = label.shape[-2:]
    i0, i1, lam_h = bilinear_source(h, big_h, align_corners, logits.device)
    band_elements = band_elements or DEFAULT_BAND_ELEMENTS
    rows = max(1, band_elements // (b * c * big_w))
    total = None
    for r0 in range(0, big_h, rows):
        r1 = min(r0 + rows, big_h)
        args = (logits, label[:, r0:r1], i0[r0:r1], i1[r0:r1], lam_h[r0:r1],
                loss_term, ignore_index, align_corners)
        if logits.requires_grad:
            part = checkpoint(_band_loss, *args, use_reentrant=False,
                              preserve_rng_state=False)
        else:
            part = _band_loss(*args)
        total = part if total is None else total + part
    if loss_term.avg_non_ignore:
        count = (label != ignore_index).sum().item()
    else:
        count = label.numel()
    return total / (count + torch.finfo(torch.float32).eps)
