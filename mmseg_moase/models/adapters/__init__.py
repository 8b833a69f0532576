from .moase import MoASEAdapter
from .sdd import sdd, sdd_mask, sdd_num_kept

__all__ = ['MoASEAdapter', 'sdd', 'sdd_mask', 'sdd_num_kept']
