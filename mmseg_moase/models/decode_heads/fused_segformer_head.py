"""SegFormer's decode head with the fuse convolution applied before the upsampling.

Both SegFormer heads (mmseg's :class:`~mmseg.models.decode_heads.SegformerHead` and
:class:`~mmseg_moase.models.decode_heads.SegformerOriginalHead`) project every
stage to ``channels``, upsample stages 2..N to the size of stage 1, concatenate and
apply a 1x1 "fuse" convolution (then norm and ReLU)::

    f = act(norm(W @ cat[up(e_1), ..., up(e_N)]))

``W`` splits into one ``channels x channels`` block per stage, and a 1x1
convolution (a per-pixel linear map) commutes with bilinear, nearest or bicubic
resizing (a per-channel linear map), so::

    W @ cat[up(e_i)] = sum_i W_i @ up(e_i) = sum_i up(W_i @ e_i)

The right-hand side applies the blocks of stages 2..N at 1/8, 1/16 and 1/32 of the
stage-1 resolution and never builds the ``N * channels`` concatenation at stage-1
resolution: the fuse convolution, the largest layer of MiT-B0's forward at 1/4
resolution, costs about a third, and the backward keeps no concatenated tensor.
The parameters are the same tensors, so checkpoints load either way; the outputs
differ from the concatenating head only by float rounding (summation order).
"""
from typing import Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor

from mmseg.models.decode_heads import SegformerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS


def check_fusable(fuse: ConvModule, owner: str) -> None:
    """Raise unless ``fuse`` is a plain 1x1 convolution followed by norm and act.

    Args:
        fuse (ConvModule): The head's fuse layer.
        owner (str): The head's name, for the error message.

    Raises:
        ValueError: The convolution is not a plain 1x1, stride-1, ungrouped
            ``nn.Conv2d``, or the layer order is not conv -> norm -> act.
    """
    conv = fuse.conv
    plain = (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1)
             and conv.stride == (1, 1) and conv.padding == (0, 0)
             and conv.dilation == (1, 1) and conv.groups == 1
             and not fuse.with_explicit_padding)
    if not plain or tuple(fuse.order) != ('conv', 'norm', 'act'):
        raise ValueError(
            f'{owner}: fuse_before_resize=True needs the fuse layer to be a plain '
            f'1x1 nn.Conv2d followed by norm and activation (got {conv!r}, order '
            f'{tuple(fuse.order)}); set fuse_before_resize=False for this conv_cfg')


def apply_fuse_before_resize(
        embeds: Sequence[Tensor], fuse: ConvModule, blocks: Sequence[int],
        size: Tuple[int, int], mode: str, align_corners: bool,
        projections: Optional[Sequence[Tuple[Tensor, Optional[Tensor]]]] = None
) -> Tensor:
    """``fuse(cat[resize(e) for e in embeds in block order])``, fuse conv first.

    With ``projections`` the embeddings are ``P_i(x_i) = A_i @ x_i + b_i`` of the
    given inputs ``x_i``, an affine map with nothing between it and the fuse
    convolution (the NVlabs head's bare ``nn.Linear`` projections). Then the
    two maps are one: ``W_i @ P_i(x) = (W_i @ A_i) @ x + W_i @ b_i``, applied as
    a single ``in_i -> out`` 1x1 convolution at the stage's resolution, and the
    biases (constant maps, which the resize leaves constant) are added once
    after the sum. No ``C``-channel embedding is ever computed, and stage 1
    maps its ``in_1`` channels straight to ``out``.

    Args:
        embeds (Sequence[Tensor]): Per-stage projections ``(B, C, H_i, W_i)``;
            with ``projections``, the inputs of those projections.
        fuse (ConvModule): 1x1 conv over ``len(embeds) * C`` channels, then norm
            and activation (see :func:`check_fusable`).
        blocks (Sequence[int]): For each embed, the index of its ``C``-channel
            block in the concatenation (``i`` for mmseg's head, ``N - 1 - i`` for
            the NVlabs head, which concatenates the stages in reverse).
        size (Tuple[int, int]): Output size (that of stage 1).
        mode (str): Interpolation mode of the resize.
        align_corners (bool): ``align_corners`` of the resize.
        projections (Sequence[Tuple[Tensor, Tensor | None]], optional): Per
            embed, the weight ``(C, in_i)`` and bias ``(C,)`` (or None) of an
            affine projection to fold into the fuse convolution.

    Returns:
        Tensor: ``(B, out_channels, *size)``.
    """
    conv = fuse.conv
    c = conv.in_channels // len(embeds)
    out = None
    bias = conv.bias
    for i, (e, k) in enumerate(zip(embeds, blocks)):
        w = conv.weight[:, k * c:(k + 1) * c]
        if projections is not None:
            a, b = projections[i]
            w2 = w.flatten(1)  # (out, C)
            if b is not None:
                wb = w2 @ b
                bias = wb if bias is None else bias + wb
            w = (w2 @ a)[:, :, None, None]
        z = F.conv2d(e, w)
        if tuple(z.shape[2:]) != tuple(size):
            z = resize(z, size=size, mode=mode, align_corners=align_corners)
        out = z if out is None else out.add_(z)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    if fuse.with_norm:
        out = fuse.norm(out)
    if fuse.with_activation:
        out = fuse.activate(out)
    return out


@MODELS.register_module()
class FusedSegformerHead(SegformerHead):
    """mmseg's SegformerHead computed with the fuse convolution before the resize.

    Same submodules and state-dict keys as
    :class:`~mmseg.models.decode_heads.SegformerHead` (checkpoints load both ways);
    logits equal up to float rounding (see the module docstring for why). About a
    third less compute in a MiT-B0 forward and no ``4 * channels`` concatenation
    at 1/4 resolution, in inference and in the backward of a CTTA update.

    Args:
        fuse_before_resize (bool): Use the reordered computation. ``False`` runs
            mmseg's forward unchanged. Defaults to True.
        **kwargs: Passed to ``SegformerHead``.

    Raises:
        ValueError: ``fuse_before_resize`` with a fuse layer that is not a plain
            1x1 convolution followed by norm and activation.
    """

    def __init__(self, fuse_before_resize: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fuse_before_resize = fuse_before_resize
        if fuse_before_resize:
            check_fusable(self.fusion_conv, type(self).__name__)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Segmentation logits at the resolution of the first selected stage."""
        if not self.fuse_before_resize:
            return super().forward(inputs)
        feats = self._transform_inputs(inputs)
        embeds = [conv(x) for conv, x in zip(self.convs, feats)]
        out = apply_fuse_before_resize(embeds, self.fusion_conv,
                                       range(len(embeds)),
                                       tuple(feats[0].shape[2:]),
                                       self.interpolate_mode, self.align_corners)
        return self.cls_seg(out)
