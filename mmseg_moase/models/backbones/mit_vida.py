"""SegFormer's MiT backbone with ViDA adapters on every attention projection."""
from typing import List, Sequence, Tuple

from mmseg.models.backbones.mit import MixVisionTransformer
from mmseg.registry import MODELS
from .adapter_backbone import AdapterBackboneMixin
from ..adapters.vida import ViDAAttentionAdapter, add_vida_adapter


@MODELS.register_module()
class MixVisionTransformerViDA(AdapterBackboneMixin, MixVisionTransformer):
    """MiT with ViDA adapters in the attention of chosen stages (docs/method.md).

    Takes every argument of mmseg's :class:`MixVisionTransformer` plus the three
    below. The blocks stay mmseg's; each chosen block's attention gets
    ``attn.adapter`` (low- and high-rank branches beside its query, key/value
    and output projections). A stock MiT state dict loads with only the
    ``adapter.`` keys missing, and fresh adapters add exact zeros.

    Args:
        vida_low_rank (int): Rank of the low-rank branches. Defaults to 1.
        vida_high_rank (int): Rank of the high-rank branches. Defaults to 128
            (the released configs' values).
        vida_stages (Sequence[int]): Stages (0-based) whose blocks get adapters.
            Defaults to all four.
        **kwargs: Passed to :class:`MixVisionTransformer`.

    Example:
        >>> backbone = dict(type='MixVisionTransformerViDA', embed_dims=32,
        ...                 num_layers=[2, 2, 2, 2], num_heads=[1, 2, 5, 8],
        ...                 vida_low_rank=1, vida_high_rank=128)
    """

    def __init__(self, *args, vida_low_rank: int = 1,
                 vida_high_rank: int = 128,
                 vida_stages: Sequence[int] = (0, 1, 2, 3), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        stages = sorted(set(vida_stages))
        bad = [s for s in stages
               if not isinstance(s, int) or not 0 <= s < self.num_stages]
        if bad:
            raise ValueError(
                f'`vida_stages` entries must be stage indices in '
                f'{list(range(self.num_stages))}, got {bad}')
        self.vida_stages = stages
        for i in stages:
            for block in self.layers[i][1]:
                add_vida_adapter(block.attn, vida_low_rank, vida_high_rank)

    def adapters(self) -> List[Tuple[str, ViDAAttentionAdapter]]:
        """(name, adapter) of every adapter, names relative to the backbone."""
        return [(n, m) for n, m in self.named_modules()
                if isinstance(m, ViDAAttentionAdapter)]
