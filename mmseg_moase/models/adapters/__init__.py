from .moase import MoASEAdapter
from .sdd import sdd, sdd_mask, sdd_num_kept
from .vida import (EfficientMultiheadAttentionViDA, ViDAAttentionAdapter,
                   add_vida_adapter)

__all__ = ['MoASEAdapter', 'sdd', 'sdd_mask', 'sdd_num_kept',
           'EfficientMultiheadAttentionViDA', 'ViDAAttentionAdapter',
           'add_vida_adapter']
