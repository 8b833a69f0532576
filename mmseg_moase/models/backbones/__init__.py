from .mit_moase import MixVisionTransformerMoASE, MoASEEncoderLayer

__all__ = ['MixVisionTransformerMoASE', 'MoASEEncoderLayer']
