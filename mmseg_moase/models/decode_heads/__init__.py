from .fused_segformer_head import FusedSegformerHead
from .segformer_original_head import LinearEmbed, SegformerOriginalHead

__all__ = ['FusedSegformerHead', 'LinearEmbed', 'SegformerOriginalHead']
