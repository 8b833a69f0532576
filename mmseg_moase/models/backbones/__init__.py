from .mit_moase import MixVisionTransformerMoASE, MoASEEncoderLayer
from .mit_vida import MixVisionTransformerViDA

__all__ = ['MixVisionTransformerMoASE', 'MoASEEncoderLayer',
           'MixVisionTransformerViDA']
