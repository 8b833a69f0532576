"""Spatial Differentiate Dropout (SDD): keep the K largest or smallest activations.

MoASE (arXiv 2405.16486) splits each expert's bottleneck activations into the few it
keeps and the many it zeroes. *Domain-agnostic* experts keep the K largest entries,
*domain-specific* experts the K smallest. The ranking runs either per token over the
channels (``token`` scope, the public code) or over the whole token x channel map of
one sample (``sample`` scope, paper Eq. 2). Kept entries keep their gradient because
the mask multiplies the input.

Ranking (``ranking``): the public code ranks the post-ReLU activations as they are
(``'all'``), so a 'smallest' expert keeps exact zeros whenever at least K of a
group's entries are inactive, and its up projection never sees a nonzero input.
``'active'`` ranks only the active (positive) entries: a 'smallest' expert keeps the
K weakest *active* neurons, all active ones where fewer than K are. For 'largest'
experts the two rankings keep the same values (an inactive entry kept by ``'all'``
is zero), so the option changes only the 'smallest' experts.

``'released'`` is the public code's expert selection as it runs: its 'largest'
experts call the top-k without ``largest=True``, whose default is the smallest,
so *every* expert keeps its K smallest post-ReLU activations (ranked as
``'all'``), whatever its configured direction. A parity option only.
"""
from typing import Tuple

import torch
from torch import Tensor

SDD_DIRECTIONS = ('largest', 'smallest')
SDD_SCOPES = ('token', 'sample')
SDD_RANKINGS = ('all', 'active', 'released')


def sdd_num_kept(num_channels: int, num_tokens: int, ratio: float,
                 scope: str) -> int:
    """Number of entries SDD keeps per ranking group.

    Args:
        num_channels (int): Channels per token (the bottleneck width r).
        num_tokens (int): Tokens per sample (N).
        ratio (float): Keep ratio p in (0, 1].
        scope (str): ``'token'`` (K = int(r * p)) or ``'sample'``
            (K = floor(N * r * p)).

    Returns:
        int: K, at least 1 and at most the group size.
    """
    group = num_channels if scope == 'token' else num_channels * num_tokens
    return max(1, min(group, int(group * ratio)))


def effective_selection(direction: str, ranking: str) -> Tuple[str, str]:
    """The direction and ranking SDD applies: ``'released'`` ranks every
    expert as a ``'smallest'`` one under ``'all'``; the rest are as given."""
    if ranking == 'released':
        return 'smallest', 'all'
    return direction, ranking


def _ranking_key(flat: Tensor, direction: str, ranking: str) -> Tensor:
    """What the top-k ranks: ``flat`` itself, or for ``'active'`` 'smallest'
    ranking ``flat`` with inactive entries (<= 0) pushed past every active one."""
    if ranking == 'all' or direction == 'largest':
        return flat
    return torch.where(flat > 0, flat, torch.full_like(flat, float('inf')))


def sdd_mask(z: Tensor, k: int, direction: str, scope: str,
             ranking: str = 'all') -> Tensor:
    """Hard 0/1 mask of the K entries SDD keeps.

    Args:
        z (Tensor): Activations of shape (B, N, C).
        k (int): Entries kept per group (per token or per sample).
        direction (str): ``'largest'`` or ``'smallest'``.
        scope (str): ``'token'`` or ``'sample'``.
        ranking (str): ``'all'`` (public code: exactly ``k`` ones per group,
            inactive entries ranked as zeros) or ``'active'`` (the ``k`` weakest
            or strongest active entries; fewer ones where fewer are active)
            or ``'released'`` (the K smallest, as ``'all'``, whatever
            ``direction`` says: the public code's selection).

    Returns:
        Tensor: Mask with the dtype of ``z``.
    """
    direction, ranking = effective_selection(direction, ranking)
    flat = z if scope == 'token' else z.reshape(z.shape[0], -1)
    flat = flat.detach()
    key = _ranking_key(flat, direction, ranking)
    # Only the kept set matters: sorted=False halves the cost of the wide DAG top-k.
    idx = key.topk(k, dim=-1, largest=direction == 'largest',
                   sorted=False).indices
    mask = torch.zeros_like(flat).scatter_(-1, idx, 1.0)
    if ranking == 'active':
        mask = mask * (flat > 0).to(mask.dtype)
    return mask.view_as(z)


def sdd(z: Tensor, ratio: float, direction: str, scope: str) -> Tensor:
    """Apply SDD: keep the top (or bottom) ``ratio`` share of ``z``, zero the rest.

    Args:
        z (Tensor): Activations of shape (B, N, C).
        ratio (float): Keep ratio in (0, 1].
        direction (str): ``'largest'`` or ``'smallest'``.
        scope (str): ``'token'`` or ``'sample'``.

    Returns:
        Tensor: ``z`` with all but the kept entries set to zero.
    """
    k = sdd_num_kept(z.shape[-1], z.shape[-2], ratio, scope)
    return z * sdd_mask(z, k, direction, scope)


def soft_threshold_mask(z: Tensor, ratio: Tensor, direction: str, scope: str,
                        temperature: float,
                        ranking: str = 'all') -> Tuple[Tensor, Tensor]:
    """Hard SDD mask with a straight-through sigmoid relaxation in ``ratio``.

    The forward value equals :func:`sdd_mask` at ``K = sdd_num_kept(ratio)``. In the
    backward pass the mask behaves like ``sigmoid(+-(z - tau) / (T * std(z)))``
    where the threshold ``tau`` is the order statistic of ``z`` at the fractional
    rank ``group * ratio``, linearly interpolated between neighbouring ranks. As
    ``tau`` moves with ``ratio``, a gradient reaches the keep-ratio and, through it,
    the ASG router that produced it.

    Args:
        z (Tensor): Activations (B, N, C).
        ratio (Tensor): Scalar keep ratio that carries a gradient.
        direction (str): ``'largest'`` or ``'smallest'``.
        scope (str): ``'token'`` or ``'sample'``.
        temperature (float): Sigmoid temperature relative to the std of ``z``.
        ranking (str): As :func:`sdd_mask`, ``'released'`` included. With
            ``'active'`` the threshold is taken among the active entries
            (inactive ones rank last), and the relaxed mask is zero where the
            hard one is zero for inactivity.

    Returns:
        tuple[Tensor, Tensor]: The straight-through mask and the hard mask.
    """
    direction, ranking = effective_selection(direction, ranking)
    flat = z if scope == 'token' else z.reshape(z.shape[0], -1)
    group = flat.shape[-1]
    k = sdd_num_kept(z.shape[-1], z.shape[-2], float(ratio.detach()), scope)
    hard = sdd_mask(z, k, direction, scope, ranking).reshape_as(flat)
    largest = direction == 'largest'
    key = flat
    if ranking == 'active' and not largest:
        # As _ranking_key, with a finite stand-in for the inactive entries'
        # rank (past every active one) so that tau stays finite.
        top = flat.detach().amax(dim=-1, keepdim=True).clamp_min(0) + 1
        key = torch.where(flat > 0, flat, top)
    ranked = key.sort(dim=-1, descending=largest).values
    # Fractional rank r = group * ratio; tau interpolates ranked[r-1] and ranked[r].
    pos = (ratio * group).clamp(1.0, float(group))
    lo = pos.detach().floor().long().clamp(1, group)
    hi = (lo + 1).clamp(max=group)
    frac = pos - lo.to(pos.dtype)
    v_lo = ranked[..., lo - 1]
    v_hi = ranked[..., hi - 1]
    tau = (v_lo + frac * (v_hi - v_lo)).unsqueeze(-1)
    scale = temperature * flat.detach().std(dim=-1, keepdim=True).clamp_min(1e-6)
    sign = 1.0 if largest else -1.0
    soft = torch.sigmoid(sign * (flat - tau) / scale)
    if ranking == 'active':
        soft = soft * (flat.detach() > 0).to(soft.dtype)
    mask = hard + (soft - soft.detach())  # exactly `hard` in the forward pass
    return mask.view_as(z), hard.view_as(z)
