"""The decode head of the NVlabs SegFormer release, for mmsegmentation 1.x.

mmseg 1.x's :class:`~mmseg.models.decode_heads.SegformerHead` is *not* the head the
NVlabs checkpoints were trained with: it projects every stage with a ConvModule
(conv + norm + ReLU) and concatenates the stages in the order ``[c1, c2, c3, c4]``.
The original head projects every stage with a bare ``nn.Linear`` (no norm, no
activation) and concatenates ``[c4, c3, c2, c1]``. :class:`SegformerOriginalHead`
computes exactly what the original computes, so a converted NVlabs checkpoint
(:func:`mmseg_moase.models.checkpoint_convert.convert_nvlabs_segformer`) gives the
original logits.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch import Tensor

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from .fused_segformer_head import apply_fuse_before_resize, check_fusable


class LinearEmbed(nn.Module):
    """Per-pixel linear projection of a feature map (NVlabs' ``MLP`` module).

    Flattens ``(N, C, H, W)`` to tokens, applies ``proj`` (an ``nn.Linear``) and
    folds the tokens back to ``(N, embed_dims, H, W)``. The parameter names
    (``proj.weight``, ``proj.bias``) are those of the original checkpoints.

    Args:
        in_channels (int): Channels of the input feature map.
        embed_dims (int): Channels of the output feature map.
    """

    def __init__(self, in_channels: int, embed_dims: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        """Project ``x`` of shape ``(N, C, H, W)`` to ``(N, embed_dims, H, W)``."""
        n, _, h, w = x.shape
        out = self.proj(x.flatten(2).transpose(1, 2))
        return out.permute(0, 2, 1).reshape(n, -1, h, w)


@MODELS.register_module()
class SegformerOriginalHead(BaseDecodeHead):
    """SegFormer's all-MLP decode head exactly as in the NVlabs release.

    For input features ``c1 .. cN`` (N = 4 for MiT, strides 4/8/16/32)::

        e_i = Linear_i(c_i)                    # linear_c{i}: no norm, no activation
        e_i = resize(e_i, size of c1)          # for i >= 2, bilinear
        f   = ReLU(BN(Conv1x1(cat[eN, ..., e2, e1])))  # linear_fuse, conv has no bias
        out = conv_seg(dropout(f))             # the classifier

    ``channels`` is the original ``decoder_params.embed_dim`` (256 for MiT-B0/B1,
    768 for MiT-B2..B5).

    Classifier: the classifier is BaseDecodeHead's ``conv_seg`` (a 1x1 conv from
    ``channels`` to ``out_channels``), used through :meth:`cls_seg` (dropout, then
    ``conv_seg``), as every mmseg head does. The original's classifier is called
    ``linear_pred``; the converter renames ``decode_head.linear_pred.*`` to
    ``decode_head.conv_seg.*`` and drops the original's own ``decode_head.conv_seg.*``,
    which the original never uses (it maps from the original config's ``channels``,
    128, not from the embedding dim). Keeping mmseg's name means tools that look for
    ``conv_seg`` (class-count checks, classifier-only fine-tuning) work unchanged.

    Submodule names follow the original so that the conversion is a rename at
    most: ``linear_c1 .. linear_cN`` (:class:`LinearEmbed`, ``.proj``),
    ``linear_fuse.conv`` / ``linear_fuse.bn`` (``bn`` is the name mmcv gives BN and
    SyncBN layers).

    Args:
        interpolate_mode (str): Mode of the upsampling of ``e2 .. eN``. The
            original uses ``'bilinear'``. Defaults to ``'bilinear'``.
        **kwargs: Passed to :class:`BaseDecodeHead` (``in_channels``, ``channels``,
            ``num_classes``, ``in_index``, ``norm_cfg``, ``act_cfg``,
            ``dropout_ratio``, ``align_corners``, ``loss_decode``, ...).
            ``input_transform`` is fixed to ``'multiple_select'``. ``norm_cfg`` is
            required (the original fuse layer always has a norm; use
            ``dict(type='BN')`` on one device, ``dict(type='SyncBN')`` on several).
            ``align_corners`` is used for the internal upsampling as well as for the
            loss and prediction resizes, as in mmseg's SegformerHead; the original
            hard-codes False internally, which is the default here and the value of
            every SegFormer config.
        fuse_before_resize (bool): Apply the fuse convolution to every stage's
            embedding before the resize and sum (see
            :mod:`~mmseg_moase.models.decode_heads.fused_segformer_head`), with
            each bare ``linear_c{i}`` folded into its block of the fuse
            convolution (two linear maps in a row are one: stage i maps its
            ``in_channels[i]`` straight to ``channels``). Same parameters,
            outputs equal up to float rounding; no ``N * channels``
            concatenation and no ``channels``-wide embedding at stage-1
            resolution. ``False`` keeps the original's order of operations.
            Defaults to False.

    Raises:
        ValueError: ``norm_cfg`` is None, or ``in_channels`` and ``in_index`` do
            not have the same length.

    Example:
        >>> head = dict(type='SegformerOriginalHead',
        ...             in_channels=[64, 128, 320, 512], in_index=[0, 1, 2, 3],
        ...             channels=768, dropout_ratio=0.1, num_classes=19,
        ...             norm_cfg=dict(type='SyncBN', requires_grad=True),
        ...             align_corners=False)
    """

    def __init__(self,
                 interpolate_mode: str = 'bilinear',
                 fuse_before_resize: bool = False,
                 **kwargs) -> None:
        if kwargs.get('input_transform', 'multiple_select') != 'multiple_select':
            raise ValueError(
                'SegformerOriginalHead fixes input_transform to '
                f"'multiple_select', got {kwargs['input_transform']!r}")
        kwargs.pop('input_transform', None)
        super().__init__(input_transform='multiple_select', **kwargs)
        if self.norm_cfg is None:
            raise ValueError(
                'SegformerOriginalHead needs a `norm_cfg` for its fuse layer (the '
                "original uses SyncBN): e.g. norm_cfg=dict(type='BN', "
                'requires_grad=True) on one device, '
                "dict(type='SyncBN', requires_grad=True) on several")
        num_inputs = len(self.in_channels)
        if num_inputs != len(self.in_index):
            raise ValueError(
                f'`in_channels` ({list(self.in_channels)}) and `in_index` '
                f'({list(self.in_index)}) must have the same length')
        self.interpolate_mode = interpolate_mode
        self.num_inputs = num_inputs
        for i, in_ch in enumerate(self.in_channels):
            self.add_module(f'linear_c{i + 1}', LinearEmbed(in_ch, self.channels))
        # bias='auto': no bias, as the conv is followed by a norm (as in the
        # original ConvModule).
        self.linear_fuse = ConvModule(
            in_channels=self.channels * num_inputs,
            out_channels=self.channels,
            kernel_size=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)
        self.fuse_before_resize = fuse_before_resize
        if fuse_before_resize:
            check_fusable(self.linear_fuse, type(self).__name__)

    @property
    def linear_embeds(self) -> List[LinearEmbed]:
        """The per-stage projections ``linear_c1 .. linear_cN``, in stage order."""
        return [getattr(self, f'linear_c{i + 1}') for i in range(self.num_inputs)]

    def fuse_features(self, inputs: Sequence[Tensor]) -> Tensor:
        """The fused feature map before dropout and classifier.

        Args:
            inputs (Sequence[Tensor]): Backbone outputs (all stages; the head picks
                ``in_index``).

        Returns:
            Tensor: ``(N, channels, H1, W1)`` with ``H1 x W1`` the size of the first
            selected stage.
        """
        feats: List[Tensor] = self._transform_inputs(inputs)
        size: Tuple[int, int] = tuple(feats[0].shape[2:])
        if self.fuse_before_resize:
            # The bare linear projections fold into the fuse convolution.
            n = len(feats)  # the original concatenates [eN, ..., e1]
            return apply_fuse_before_resize(
                feats, self.linear_fuse, [n - 1 - i for i in range(n)], size,
                self.interpolate_mode, self.align_corners,
                projections=[(e.proj.weight, e.proj.bias)
                             for e in self.linear_embeds])
        embeds = []
        for i, (x, proj) in enumerate(zip(feats, self.linear_embeds)):
            e = proj(x)
            if i > 0:  # the original resizes c2..cN only
                e = resize(
                    e,
                    size=size,
                    mode=self.interpolate_mode,
                    align_corners=self.align_corners)
            embeds.append(e)
        return self.linear_fuse(torch.cat(embeds[::-1], dim=1))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Segmentation logits at the resolution of the first selected stage.

        Args:
            inputs (Sequence[Tensor]): Backbone outputs.

        Returns:
            Tensor: ``(N, out_channels, H1, W1)``.
        """
        return self.cls_seg(self.fuse_features(inputs))
