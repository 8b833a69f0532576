"""ViDA adapters (Liu et al., ICLR 2024) for the projections of MiT's attention.

A port of ViDA's public classification code. Every linear projection of an
efficient self-attention (query, key/value, output) gets two parallel
bottleneck branches without biases,

    out = W x + s_low * up_low(down_low(x)) + s_high * up_high(down_high(x)),

a low-rank one (r = 1) and a high-rank one (r = 128), with down weights drawn
from N(0, (1 / r^2)^2) and up weights zero, as the released
``ViDAInjectedLinear``. The branches are linear, so the same output is
``(W + s_low * U_low D_low + s_high * U_high D_high) x``: the attention runs
with the merged weight matrices (:class:`EfficientMultiheadAttentionViDA`), in
the stock ``nn.MultiheadAttention`` computation. A fresh adapter adds exact
zeros, so the model computes bit for bit what the source model computes.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from ..fast_attention import EfficientMultiheadAttentionNoWeights


class ViDABranch(nn.Module):
    """One bottleneck branch ``up @ down`` of rank ``rank``, no biases."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f'ViDA branch rank must be >= 1, got {rank}')
        self.rank = rank
        self.down = nn.Parameter(torch.empty(rank, in_features))
        self.up = nn.Parameter(torch.empty(out_features, rank))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The released initialisation: down ~ N(0, 1/r^2 std), up = 0."""
        nn.init.normal_(self.down, std=1.0 / self.rank**2)
        nn.init.zeros_(self.up)

    def weight(self) -> Tensor:
        """The branch as an (out, in) matrix."""
        return self.up @ self.down


class ViDAProjection(nn.Module):
    """The low- and high-rank branch of one linear projection."""

    def __init__(self, in_features: int, out_features: int, low_rank: int,
                 high_rank: int) -> None:
        super().__init__()
        self.low = ViDABranch(in_features, out_features, low_rank)
        self.high = ViDABranch(in_features, out_features, high_rank)

    def delta(self, scale_low: float, scale_high: float) -> Tensor:
        """``s_low * U_low D_low + s_high * U_high D_high`` (out, in)."""
        return (self.low.weight() * scale_low +
                self.high.weight() * scale_high)


class ViDAAttentionAdapter(BaseModule):
    """ViDA branches for the query, key/value and output projection of one
    MiT attention of width ``embed_dims``.

    The HKA scales (``scale_low``, ``scale_high``; 1.0 when built) are plain
    attributes set by the method each step, not state-dict entries.

    Args:
        embed_dims (int): The attention's width E (query E -> E, key/value
            E -> 2E, output E -> E, as NVlabs' ``q``, ``kv`` and ``proj``).
        low_rank (int): Rank of the low-rank branches. Defaults to 1.
        high_rank (int): Rank of the high-rank branches. Defaults to 128.
    """

    #: Parameter group of the CTTA optimiser and the EMA
    #: (:mod:`mmseg_moase.models.ctta_parts`).
    ctta_param_group = 'vida'

    def __init__(self, embed_dims: int, low_rank: int = 1,
                 high_rank: int = 128) -> None:
        super().__init__()
        e = embed_dims
        self.q = ViDAProjection(e, e, low_rank, high_rank)
        self.kv = ViDAProjection(e, 2 * e, low_rank, high_rank)
        self.proj = ViDAProjection(e, e, low_rank, high_rank)
        self.scale_low = 1.0
        self.scale_high = 1.0

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, ViDABranch):
                m.reset_parameters()

    def deltas(self) -> Tuple[Tensor, Tensor]:
        """Additions to the packed in-projection (3E, E) and the output
        projection (E, E) weights at the current scales."""
        s = (self.scale_low, self.scale_high)
        return (torch.cat([self.q.delta(*s), self.kv.delta(*s)]),
                self.proj.delta(*s))

    def branch_norms(self) -> Dict[str, float]:
        """Frobenius norm of the low- and high-rank branches' up weights,
        summed over the three projections (0 for fresh adapters)."""
        out = {}
        for kind in ('low', 'high'):
            ups = [getattr(p, kind).up for p in (self.q, self.kv, self.proj)]
            out[kind] = float(torch.stack([u.detach().norm() for u in ups])
                              .square().sum().sqrt())
        return out


class EfficientMultiheadAttentionViDA(EfficientMultiheadAttentionNoWeights):
    """MiT attention whose projections carry a :class:`ViDAAttentionAdapter`
    (``self.adapter``); same stock keys plus ``adapter.*``.

    Built by :func:`add_vida_adapter` from a stock layer (its class changes in
    place). The attention is ``nn.MultiheadAttention``'s own computation
    (``F.multi_head_attention_forward``, without attention weights) on the
    merged weights.
    """

    def attend(self, x_q: Tensor, x_kv: Tensor) -> Tensor:
        mha = self.attn
        d_in, d_out = self.adapter.deltas()
        return F.multi_head_attention_forward(
            x_q, x_kv, x_kv, mha.embed_dim, mha.num_heads,
            mha.in_proj_weight + d_in, mha.in_proj_bias, mha.bias_k,
            mha.bias_v, mha.add_zero_attn, mha.dropout,
            mha.out_proj.weight + d_out, mha.out_proj.bias,
            training=mha.training, need_weights=False)[0]


def add_vida_adapter(attn: nn.Module, low_rank: int,
                     high_rank: int) -> ViDAAttentionAdapter:
    """Give a stock MiT attention layer ViDA branches (in place).

    Args:
        attn (nn.Module): An mmseg ``EfficientMultiheadAttention`` (or the
            class :func:`~mmseg_moase.models.fast_attention.skip_attention_weights`
            gives it).
        low_rank (int): Rank of the low-rank branches.
        high_rank (int): Rank of the high-rank branches.

    Returns:
        ViDAAttentionAdapter: The new adapter (``attn.adapter``).
    """
    if not hasattr(attn, 'attn') or not isinstance(attn.attn,
                                                   nn.MultiheadAttention):
        raise TypeError(f'expected a MiT EfficientMultiheadAttention, got '
                        f'{type(attn).__name__}')
    if attn.attn.in_proj_weight is None:
        raise ValueError('ViDA needs the packed in-projection of '
                         'nn.MultiheadAttention (equal query/key/value widths)')
    adapter = ViDAAttentionAdapter(attn.attn.embed_dim, low_rank, high_rank)
    attn.adapter = adapter
    attn.__class__ = EfficientMultiheadAttentionViDA
    return adapter
