"""SegFormer's MiT backbone with a MoASE adapter beside every Mix-FFN."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import Tensor

from mmseg.models.backbones.mit import (MixVisionTransformer,
                                        TransformerEncoderLayer)
from mmseg.registry import MODELS
from .adapter_backbone import AdapterBackboneMixin
from ..adapters.moase import default_bottleneck


class MoASEEncoderLayer(BaseModule):
    """A stock MiT block plus a MoASE adapter, parallel to its Mix-FFN.

    ``out = h + MixFFN(norm2(h)) + adapter(h)`` with ``h`` the residual stream after
    attention; the adapter applies its own output scale. The block's submodules are
    taken over unchanged, so their state-dict keys stay those of the stock block and
    the adapter only adds ``adapter.*`` keys.

    Args:
        block (TransformerEncoderLayer): The stock block to wrap.
        adapter (BaseModule): The adapter, called as ``adapter(h, hw_shape)``.
    """

    def __init__(self, block: TransformerEncoderLayer,
                 adapter: BaseModule) -> None:
        super().__init__()
        self.norm1 = block.norm1
        self.attn = block.attn
        self.norm2 = block.norm2
        self.ffn = block.ffn
        self.with_cp = block.with_cp
        self.adapter = adapter

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:

        def _inner_forward(x):
            x = self.attn(self.norm1(x), hw_shape, identity=x)
            ffn = self.ffn(self.norm2(x), hw_shape, identity=x)
            out = self.adapter(x, hw_shape)
            stats = getattr(self.adapter, 'stats', None)
            if stats is not None:
                stats.add_output_ratio(out, ffn - x)
            return ffn + out

        if self.with_cp and x.requires_grad:
            return cp.checkpoint(_inner_forward, x, use_reentrant=False)
        return _inner_forward(x)


@MODELS.register_module()
class MixVisionTransformerMoASE(AdapterBackboneMixin, MixVisionTransformer):
    """MiT (SegFormer backbone) with MoASE adapters in chosen stages.

    Takes every argument of mmseg's :class:`MixVisionTransformer` plus the three
    below. A stock MiT state dict loads into it with only the adapters' keys missing,
    and with fresh adapters it computes exactly what the stock backbone computes.

    Args:
        moase_cfg (dict, optional): Adapter config shared by all blocks (``type``
            defaults to ``'MoASEAdapter'``; ``embed_dims`` is filled in per stage,
            ``bottleneck`` too unless given here or in ``moase_bottlenecks``).
        moase_stages (Sequence[int]): Stages (0-based) that get adapters in every
            block. Defaults to all four.
        moase_bottlenecks (int | Sequence[int | None], optional): Bottleneck width,
            one value for all stages or one per stage; None falls back to
            ``moase_cfg['bottleneck']``, then to max(D/16, 16).
        **kwargs: Passed to :class:`MixVisionTransformer`.

    Example:
        >>> backbone = dict(type='MixVisionTransformerMoASE', embed_dims=32,
        ...                 num_layers=[2, 2, 2, 2], num_heads=[1, 2, 5, 8],
        ...                 moase_cfg=dict(num_experts=4, dag_input='low'),
        ...                 moase_stages=(2, 3))
    """

    def __init__(self,
                 *args,
                 moase_cfg: Optional[dict] = None,
                 moase_stages: Sequence[int] = (0, 1, 2, 3),
                 moase_bottlenecks: Union[int, Sequence[Optional[int]],
                                          None] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        stages = list(moase_stages)
        for s in stages:
            if not isinstance(s, int) or not 0 <= s < self.num_stages:
                raise ValueError(
                    f'`moase_stages` entries must be stage indices in '
                    f'{list(range(self.num_stages))} (this MiT has '
                    f'{self.num_stages} stages), got {s!r}')
        if moase_bottlenecks is None or isinstance(moase_bottlenecks, int):
            bottlenecks = [moase_bottlenecks] * self.num_stages
        else:
            bottlenecks = list(moase_bottlenecks)
            if len(bottlenecks) != self.num_stages:
                raise ValueError(
                    '`moase_bottlenecks` must be an int, None or one value per '
                    f'stage ({self.num_stages}), got {moase_bottlenecks!r}')
        self.moase_stages = sorted(set(stages))
        cfg = dict(type='MoASEAdapter')
        cfg.update(moase_cfg or {})
        for i in self.moase_stages:
            dims = self.embed_dims * self.num_heads[i]
            width = (bottlenecks[i] or cfg.get('bottleneck')
                     or default_bottleneck(dims))
            blocks = self.layers[i][1]
            for j, block in enumerate(blocks):
                adapter = MODELS.build(
                    dict(cfg, embed_dims=dims, bottleneck=width))
                blocks[j] = MoASEEncoderLayer(block, adapter)

    def adapters(self) -> List[Tuple[str, BaseModule]]:
        """(name, adapter) of every adapter, names relative to the backbone."""
        return [(n, m.adapter) for n, m in self.named_modules()
                if isinstance(m, MoASEEncoderLayer)]

    def set_telemetry(self, enabled: bool) -> None:
        """Start (fresh sums) or stop recording every adapter's statistics."""
        for _, adapter in self.adapters():
            adapter.set_telemetry(enabled)

    def collect_telemetry(self) -> Dict[str, float]:
        """The adapters' statistics since the last call, then fresh sums.

        Keys ``moase.stage{s}.{stat}`` (``output_ratio``: adapter output /
        Mix-FFN output norm, mean over the stage's blocks) and
        ``moase.stage{s}.expert{i}.{stat}`` (``dead_share``, ``dag_weight``,
        ``keep_ratio``, ``k``), plus ``moase.all.*``, the means over all
        adapters. Stages count from 1 as in the SegFormer paper. Empty if
        nothing was recorded.
        """
        per_stage: Dict[int, List[Dict[str, List[float]]]] = {}
        for i, layer in enumerate(self.layers):
            for block in layer[1]:
                stats = getattr(getattr(block, 'adapter', None), 'stats', None)
                if stats is not None and stats.calls:
                    per_stage.setdefault(i + 1, []).append(stats.means())
        out: Dict[str, float] = {}

        def put(prefix: str, records: List[Dict[str, List[float]]]) -> None:
            for key in records[0]:
                values = [r[key] for r in records if key in r]
                mean = [sum(v) / len(values) for v in zip(*values)]
                if key == 'output_ratio':
                    out[f'{prefix}.{key}'] = mean[0]
                else:
                    for e, v in enumerate(mean):
                        out[f'{prefix}.expert{e}.{key}'] = v

        for stage, records in per_stage.items():
            put(f'moase.stage{stage}', records)
        if per_stage:
            put('moase.all', [r for rs in per_stage.values() for r in rs])
        for _, adapter in self.adapters():
            if adapter.stats is not None:
                adapter.set_telemetry(True)
        return out
