"""Registries of mmseg-moase (methods live outside mmseg's MODELS on purpose: a CTTA
method wraps a segmentor, it is not one)."""
from mmengine.registry import Registry

#: Continual test-time adaptation methods (Source, NormStat, TENT, CoTTA, MoASE...).
METHODS = Registry('ctta method', locations=['mmseg_moase.methods'])
