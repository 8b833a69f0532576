"""CTTA methods. Adding one = one file here registering into ``METHODS`` (and an
import line below), plus a config."""
from .base import BaseCTTAMethod
from .cotta import CoTTA
from .moase import MoASE
from .moase_pp import MoASEPP
from .norm_stat import NormStat
from .source import Source
from .tent import TENT
from .vida import ViDA

__all__ = ['BaseCTTAMethod', 'CoTTA', 'MoASE', 'MoASEPP', 'NormStat', 'Source',
           'TENT', 'ViDA']
