"""MiT attention without the attention-weight map nobody reads.

mmseg 1.2.2's ``EfficientMultiheadAttention.forward`` (the attention of every MiT
block) calls ``torch.nn.MultiheadAttention`` with its default ``need_weights=True``
and keeps only the output. PyTorch then computes the attention explicitly: the
``(heads, N, N / sr^2)`` score map, its softmax, and the head-average of the
weights it returns, which mmseg throws away. With ``need_weights=False`` the same
attention runs through ``scaled_dot_product_attention`` (a fused kernel that
never holds the whole score map, forward or backward); mmseg's own
``legacy_forward`` makes that call. The outputs are those of the explicit
computation up to float rounding (the fused kernel sums in blocks).

Measured on one CPU thread (stage 1 of MiT-B0 on a 512x1024 view: 32768 queries,
512 keys, 32 channels): forward 163 -> 54 ms, forward and backward 356 -> 182 ms.

:func:`skip_attention_weights` switches the attention layers of a built model;
the CTTA loop does it for every model (``ctta_cfg.skip_attention_weights``) and
``tools/benchmark_ctta.py`` measures with it.
"""
import torch.nn as nn
from torch import Tensor

from mmseg.models.backbones.mit import EfficientMultiheadAttention
from mmseg.models.utils import nchw_to_nlc, nlc_to_nchw


class EfficientMultiheadAttentionNoWeights(EfficientMultiheadAttention):
    """mmseg's ``EfficientMultiheadAttention`` calling ``nn.MultiheadAttention``
    with ``need_weights=False``; same parameters and state-dict keys.

    Not built from configs: :func:`skip_attention_weights` gives existing layers
    this class, so a model keeps its registered (stock) types in configs.
    """

    def forward(self, x: Tensor, hw_shape, identity=None) -> Tensor:
        x_q = x
        if self.sr_ratio > 1:
            x_kv = nlc_to_nchw(x, hw_shape)
            x_kv = self.sr(x_kv)
            x_kv = nchw_to_nlc(x_kv)
            x_kv = self.norm(x_kv)
        else:
            x_kv = x
        if identity is None:
            identity = x_q
        if self.batch_first:
            x_q = x_q.transpose(0, 1)
            x_kv = x_kv.transpose(0, 1)
        out = self.attend(x_q, x_kv)
        if self.batch_first:
            out = out.transpose(0, 1)
        return identity + self.dropout_layer(self.proj_drop(out))

    def attend(self, x_q: Tensor, x_kv: Tensor) -> Tensor:
        """The attention proper on sequence-first inputs (N, B, C); a subclass
        may change the projections here (ViDA's adapters do)."""
        return self.attn(query=x_q, key=x_kv, value=x_kv, need_weights=False)[0]


def skip_attention_weights(model: nn.Module) -> int:
    """Make every MiT attention layer of ``model`` skip the attention weights.

    The layers change class in place (to
    :class:`EfficientMultiheadAttentionNoWeights`): parameters, buffers, hooks
    and state-dict keys stay as they are, and copies made afterwards (an EMA
    teacher, CoTTA's anchor) inherit the change. Layers of other types, and
    those of a model already switched, are left alone.

    Args:
        model (nn.Module): Any model (mmseg segmentor, backbone, wrapper).

    Returns:
        int: The number of layers switched.
    """
    count = 0
    for m in model.modules():
        if type(m) is EfficientMultiheadAttention:
            m.__class__ = EfficientMultiheadAttentionNoWeights
            count += 1
    return count
