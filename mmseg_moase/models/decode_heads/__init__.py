from .segformer_original_head import LinearEmbed, SegformerOriginalHead

__all__ = ['LinearEmbed', 'SegformerOriginalHead']
