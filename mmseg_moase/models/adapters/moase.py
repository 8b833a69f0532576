"""Mixture-of-Activation-Sparsity-Experts adapter.

`Decomposing the Neurons: Activation Sparsity via Mixture of Experts for Continual
Test Time Adaptation <https://arxiv.org/abs/2405.16486>`_ (MoASE). Where the paper and
its public code disagree, both are options; ``docs/method.md`` lists each option,
its default and why.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmseg.registry import MODELS
from ...utils.options import check_choice
from ..sync_bn import global_mean
from .sdd import (SDD_DIRECTIONS, SDD_RANKINGS, SDD_SCOPES, sdd, sdd_mask,
                  sdd_num_kept, soft_threshold_mask)

DAG_INPUTS = ('low', 'high')
ASG_GRADS = ('none', 'ste')
EXPERT_TYPES = ('linear', 'mixffn')


def default_bottleneck(embed_dims: int) -> int:
    """Default bottleneck width r = max(D / 16, 16) (the paper's reported run)."""
    return max(embed_dims // 16, 16)


def default_sdd_experts(num_experts: int) -> Tuple[List[str], List[float]]:
    """Default SDD direction and base ratio per expert.

    The first half of the experts keep the smallest activations (domain-specific),
    the second half the largest (domain-agnostic); within each half the base ratios
    alternate 1/4, 1/2. For 4 experts this is the public code's
    (smallest 1/4, smallest 1/2, largest 1/4, largest 1/2).
    """
    half = num_experts // 2
    directions = ['smallest'] * half + ['largest'] * (num_experts - half)
    ratios = [0.25 if (i if i < half else i - half) % 2 == 0 else 0.5
              for i in range(num_experts)]
    return directions, ratios


def _check_choice(name: str, value, allowed: Sequence) -> None:
    check_choice('MoASE', name, value, allowed)


class ExpertBank(nn.Module):
    """The E bottleneck experts of one adapter, stored stacked.

    Expert i computes ``Linear(D->r) [-> 3x3 depthwise conv] -> ReLU -> SDD ->
    Linear(r->D)``. Weights are stacked along a leading expert axis so all experts
    run in one matmul; ``down_weight[i]`` is expert i's (D, r) down projection.

    Args:
        embed_dims (int): D.
        bottleneck (int): r.
        num_experts (int): E.
        expert_type (str): ``'linear'`` or ``'mixffn'`` (adds a depthwise conv).
    """

    #: Parameter group for the trainable-groups code (:mod:`..ctta_parts`).
    ctta_param_group = 'experts'

    def __init__(self, embed_dims: int, bottleneck: int, num_experts: int,
                 expert_type: str = 'linear') -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.bottleneck = bottleneck
        self.num_experts = num_experts
        self.down_weight = nn.Parameter(
            torch.empty(num_experts, embed_dims, bottleneck))
        self.down_bias = nn.Parameter(torch.zeros(num_experts, bottleneck))
        self.up_weight = nn.Parameter(
            torch.zeros(num_experts, bottleneck, embed_dims))
        self.up_bias = nn.Parameter(torch.zeros(num_experts, embed_dims))
        self.dwconv = None
        if expert_type == 'mixffn':
            ch = num_experts * bottleneck
            self.dwconv = nn.Conv2d(ch, ch, 3, padding=1, groups=ch)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform down weights (as ``nn.Linear``); everything else zero."""
        bound = 1.0 / math.sqrt(self.embed_dims)  # kaiming_uniform_(a=sqrt(5))
        with torch.no_grad():
            self.down_weight.uniform_(-bound, bound)
            self.down_bias.zero_()
            self.up_weight.zero_()
            self.up_bias.zero_()
            if self.dwconv is not None:
                self.dwconv.reset_parameters()

    def down(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        """Bottleneck activations of every expert, (B, N, E, r), after ReLU."""
        b, n, d = x.shape
        w = self.down_weight.permute(1, 0, 2).reshape(d, -1)
        z = torch.addmm(self.down_bias.reshape(-1), x.reshape(-1, d), w)
        z = z.view(b, n, -1)
        if self.dwconv is not None:
            h, w_ = hw_shape
            z = z.transpose(1, 2).reshape(b, -1, h, w_)
            z = self.dwconv(z).flatten(2).transpose(1, 2)
        return F.relu(z).view(b, n, self.num_experts, self.bottleneck)

    def up(self, z: Tensor, weights: Tensor) -> Tensor:
        """Mix of the experts' up projections: sum_i weights_i * up_i(z_i).

        Args:
            z (Tensor): Sparse bottleneck activations (B, N, E, r).
            weights (Tensor): Per-token expert weights (B, N, E).
        """
        b, n, e, r = z.shape
        zw = (z * weights.unsqueeze(-1)).reshape(b * n, e * r)
        out = torch.addmm((weights.reshape(b * n, e) @ self.up_bias), zw,
                          self.up_weight.reshape(e * r, -1))
        return out.view(b, n, -1)


@MODELS.register_module()
class MoASEAdapter(BaseModule):
    """MoASE adapter: a dense soft mixture of activation-sparsity experts.

    ``MoASE(h) = scale * sum_i phi_i(h) * expert_i(h; p_i)`` where

    * ``expert_i`` is a bottleneck whose activations pass through SDD keeping a share
      ``p_i`` of them (the largest or the smallest, per expert);
    * ``p_i = q_i + eta * mean(eps_i)`` with ``eps = softmax(ASG(h))`` over experts,
      averaged over the batch and tokens (the Activation Sparsity Gate);
    * ``phi = softmax(DAG(SDD_{1/2}(h)))`` per token (the Domain-Aware Gate), reading
      the weakest (``dag_input='low'``) or strongest (``'high'``) half of ``h``.

    Up projections and all biases start at zero, so a fresh adapter outputs exactly 0.

    Args:
        embed_dims (int): Width D of the residual stream it reads.
        num_experts (int): E. Defaults to 4.
        bottleneck (int, optional): Expert width r. Defaults to max(D / 16, 16).
        sdd_directions (Sequence[str], optional): ``'largest'`` / ``'smallest'`` per
            expert. Defaults to :func:`default_sdd_experts`.
        sdd_ratios (Sequence[float], optional): Base keep ratio q_i in (0, 1] per
            expert. Defaults to :func:`default_sdd_experts`.
        sdd_scope (str): ``'token'`` (public code, default) or ``'sample'`` (Eq. 2).
        sdd_ranking (str): What 'smallest' experts rank. ``'all'`` (the public
            code): the post-ReLU activations as they are, so such an expert keeps
            exact zeros wherever K of a token's r activations are inactive (on the
            synthetic source model, expert 0 kept only zeros in 100% of tokens:
            its weights never get a gradient). ``'active'``: the K weakest
            *active* (positive) activations, all active ones where fewer than K
            are (see :mod:`.sdd`). 'largest' experts are the same under both.
            Defaults to ``'active'``: on the synthetic benchmark (MiT-B0, 768
            steps) ``'all'`` left expert 0 with only zeros in 98% of the tokens
            and expert 1 in 75% (their weights get no gradient there), ``'active'``
            in 0%, at the same scored mIoU (21.13 both; docs/results.md, "Live
            experts").
            ``'released'``: the public code's selection as it runs, every
            expert (the 'largest' ones too) keeping its K smallest post-ReLU
            activations, ranked as ``'all'`` (a parity option).
        eta (float): ASG strength. Defaults to 0.1.
        dag_input (str): ``'low'`` (paper, default) or ``'high'`` (public code).
        dag_keep_ratio (float): Share of channels SDD keeps before the DAG. 0.5.
        asg_grad (str): ``'none'`` (faithful: K is an integer so the ASG router gets
            no gradient) or ``'ste'``: the hard mask in the forward pass and, in the
            backward pass, a sigmoid around an interpolated rank threshold, so the
            keep ratio (and the ASG router) receives a gradient. An extension of this
            project; the forward output is identical to ``'none'``.
        asg_temperature (float): Sigmoid temperature of ``'ste'``, in units of the
            activations' per-group standard deviation. Defaults to 0.1.
        expert_type (str): ``'linear'`` or ``'mixffn'`` (3x3 depthwise conv inside).
        scale (float): Output scale s. Defaults to 0.8.
        init_cfg (dict, optional): mmengine init config.
    """

    #: Its own parameters (the ASG and DAG gates) are routers; the expert bank
    #: inside declares its own group (:mod:`..ctta_parts`).
    ctta_param_group = 'routers'

    def __init__(self,
                 embed_dims: int,
                 num_experts: int = 4,
                 bottleneck: Optional[int] = None,
                 sdd_directions: Optional[Sequence[str]] = None,
                 sdd_ratios: Optional[Sequence[float]] = None,
                 sdd_scope: str = 'token',
                 sdd_ranking: str = 'active',
                 eta: float = 0.1,
                 dag_input: str = 'low',
                 dag_keep_ratio: float = 0.5,
                 asg_grad: str = 'none',
                 asg_temperature: float = 0.1,
                 expert_type: str = 'linear',
                 scale: float = 0.8,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError('MoASE option `num_experts` must be an integer >= 1, '
                             f'got {num_experts!r}')
        if bottleneck is None:
            bottleneck = default_bottleneck(embed_dims)
        if not isinstance(bottleneck, int) or bottleneck < 1:
            raise ValueError('MoASE option `bottleneck` must be an integer >= 1 '
                             f'(or None for max(D/16, 16)), got {bottleneck!r}')
        def_dirs, def_ratios = default_sdd_experts(num_experts)
        sdd_directions = list(def_dirs if sdd_directions is None else
                              sdd_directions)
        sdd_ratios = [float(q) for q in (def_ratios if sdd_ratios is None
                                         else sdd_ratios)]
        for name, values in (('sdd_directions', sdd_directions),
                             ('sdd_ratios', sdd_ratios)):
            if len(values) != num_experts:
                raise ValueError(
                    f'MoASE option `{name}` needs one entry per expert '
                    f'(num_experts={num_experts}), got {len(values)}: {values}')
        for d in sdd_directions:
            _check_choice('sdd_directions', d, SDD_DIRECTIONS)
        for q in sdd_ratios + [dag_keep_ratio]:
            if not 0.0 < q <= 1.0:
                raise ValueError('MoASE options `sdd_ratios` and `dag_keep_ratio` '
                                 f'must lie in (0, 1], got {q!r}')
        _check_choice('sdd_scope', sdd_scope, SDD_SCOPES)
        _check_choice('sdd_ranking', sdd_ranking, SDD_RANKINGS)
        _check_choice('dag_input', dag_input, DAG_INPUTS)
        _check_choice('asg_grad', asg_grad, ASG_GRADS)
        _check_choice('expert_type', expert_type, EXPERT_TYPES)
        if eta < 0:
            raise ValueError(f'MoASE option `eta` must be >= 0, got {eta!r}')

        self.embed_dims = embed_dims
        self.num_experts = num_experts
        self.bottleneck = bottleneck
        self.sdd_directions = sdd_directions
        self.sdd_ratios = sdd_ratios
        self.sdd_scope = sdd_scope
        self.sdd_ranking = sdd_ranking
        self.eta = float(eta)
        self.dag_input = dag_input
        self.dag_keep_ratio = float(dag_keep_ratio)
        self.asg_grad = asg_grad
        self.asg_temperature = float(asg_temperature)
        self.expert_type = expert_type
        self.scale = float(scale)

        self.experts = ExpertBank(embed_dims, bottleneck, num_experts,
                                  expert_type)
        self.asg = nn.Linear(embed_dims, num_experts)
        self.dag = nn.Linear(embed_dims, num_experts)
        # Independent batches the input is made of (ctta_parts.batch_groups).
        self.batch_groups = 1
        # The keep ratios' batch mean over every rank (ctta_parts).
        self.rank_statistics = False
        #: Accumulated telemetry (see :meth:`set_telemetry`); None = off.
        self.stats: Optional[AdapterStats] = None

    def set_telemetry(self, enabled: bool) -> None:
        """Start (fresh sums) or stop recording :class:`AdapterStats`."""
        self.stats = AdapterStats() if enabled else None

    def reset_parameters(self) -> None:
        """Fresh adapter: routers as ``nn.Linear``, experts output zero."""
        self.experts.reset_parameters()
        self.asg.reset_parameters()
        self.dag.reset_parameters()

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            self.reset_parameters()

    def gradient_free_parameter_names(self) -> List[str]:
        """Parameters no loss can reach: the ASG router when ``asg_grad='none'``."""
        if self.asg_grad == 'none':
            return [f'asg.{n}' for n, _ in self.asg.named_parameters()]
        return []

    def keep_ratios(self, x: Tensor) -> Tensor:
        """ASG keep ratios p_i = q_i + eta * mean(eps_i), shape (E,), <= 1.

        The mean is over the batch and the tokens; with :attr:`rank_statistics`
        over every rank's batch (the CTTA loop on several processes), so the
        ratios are those of one process holding the global batch.
        """
        eps = F.softmax(self.asg(x), dim=-1)
        q = x.new_tensor(self.sdd_ratios)
        dims = tuple(range(eps.dim() - 1))
        mean = global_mean(eps, dims) if self.rank_statistics else \
            eps.mean(dim=dims)
        p = (q + self.eta * mean)
        p = p.clamp(max=1.0)
        return p if self.asg_grad == 'ste' else p.detach()

    def routing_weights(self, x: Tensor) -> Tensor:
        """DAG weights phi (B, N, E): softmax over experts, per token."""
        direction = 'smallest' if self.dag_input == 'low' else 'largest'
        h = sdd(x, self.dag_keep_ratio, direction, 'token')
        return F.softmax(self.dag(h), dim=-1)

    def expert_masks(self, z: Tensor, ratios: Tensor) -> Tensor:
        """SDD masks for every expert, (B, N, E, r).

        One top-k per expert: a single top-k over the stacked experts (sign-keyed,
        sorted, ``max(k)`` entries) measured no faster on CPU, the per-row top-k
        kernel costing the same either way.
        """
        masks = []
        for i in range(self.num_experts):
            zi = z[:, :, i]
            if self.asg_grad == 'ste':
                mask, _ = soft_threshold_mask(zi, ratios[i],
                                              self.sdd_directions[i],
                                              self.sdd_scope,
                                              self.asg_temperature,
                                              self.sdd_ranking)
            else:
                k = sdd_num_kept(zi.shape[-1], zi.shape[-2], float(ratios[i]),
                                 self.sdd_scope)
                mask = sdd_mask(zi, k, self.sdd_directions[i], self.sdd_scope,
                                self.sdd_ranking)
            masks.append(mask)
        return torch.stack(masks, dim=2)

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        """Adapter output for the residual stream ``x`` (B, N, D).

        Inside :func:`~mmseg_moase.models.ctta_parts.batch_groups` the batch is split into its independent
        batches, each with its own ASG keep ratios.
        """
        if self.batch_groups > 1:
            return torch.cat([self._forward(c, hw_shape)
                              for c in x.chunk(self.batch_groups)])
        return self._forward(x, hw_shape)

    def _forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        ratios = self.keep_ratios(x)
        phi = self.routing_weights(x)
        z = self.experts.down(x, hw_shape)
        z = z * self.expert_masks(z, ratios)
        out = self.scale * self.experts.up(z, phi)
        if self.stats is not None:
            self.stats.add(self, z, phi, ratios)
        return out

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_experts={self.num_experts}, '
                f'bottleneck={self.bottleneck}, sdd={list(zip(self.sdd_directions, self.sdd_ratios))}, '
                f'sdd_scope={self.sdd_scope}, sdd_ranking={self.sdd_ranking}, eta={self.eta}, '
                f'dag_input={self.dag_input}, asg_grad={self.asg_grad}, '
                f'expert_type={self.expert_type}, scale={self.scale}')


class AdapterStats:
    """Running sums of what one adapter did, over the forwards it recorded.

    Per expert: the share of tokens whose kept SDD entries are all zero (a
    *dead* token: the expert adds only its up-bias there and its weights get no
    gradient from it), the mean DAG weight, the ASG keep ratio and the K it
    gives; per adapter: the norm of its output relative to the Mix-FFN output
    beside it (added by the block). Sums stay tensors, so recording costs no
    host synchronisation; :meth:`means` reads them once.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.sums: Dict[str, Tensor] = {}
        self.ratio_calls = 0
        self.ratio_sum = 0.0

    def _add(self, name: str, value: Tensor) -> None:
        value = value.detach().float()
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    @torch.no_grad()
    def add(self, adapter: 'MoASEAdapter', z: Tensor, phi: Tensor,
            ratios: Tensor) -> None:
        """Record one forward: masked activations z (B, N, E, r), DAG weights
        phi (B, N, E) and keep ratios (E,)."""
        self.calls += 1
        self._add('dead_share', (z.sum(-1) == 0).float().mean(dim=(0, 1)))
        self._add('dag_weight', phi.mean(dim=(0, 1)))
        self._add('keep_ratio', ratios)
        # K = sdd_num_kept(ratio) for every expert at once, on the device: no
        # host synchronisation per expert (float64 as Python's int(group * p)).
        group = z.shape[-1] * (1 if adapter.sdd_scope == 'token' else z.shape[1])
        self._add('k', (ratios.detach().double() * group).floor().clamp(1, group))

    @torch.no_grad()
    def add_output_ratio(self, adapter_out: Tensor, ffn_out: Tensor) -> None:
        """Record ||adapter output|| / ||Mix-FFN output|| of one forward."""
        self.ratio_calls += 1
        ratio = adapter_out.detach().float().norm() / \
            ffn_out.detach().float().norm().clamp_min(1e-12)
        self.ratio_sum = self.ratio_sum + ratio

    def means(self) -> Dict[str, List[float]]:
        """Per-expert means (lists of E floats) and ``output_ratio`` ([one])."""
        out = {k: (v / self.calls).tolist() for k, v in self.sums.items()} \
            if self.calls else {}
        if self.ratio_calls:
            out['output_ratio'] = [float(self.ratio_sum) / self.ratio_calls]
        return out
