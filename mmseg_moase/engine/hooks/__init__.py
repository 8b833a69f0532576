from .ema_teacher_hook import EMATeacherHook, ema_update
from .source_weights_hook import SourceWeightsHook

__all__ = ['EMATeacherHook', 'SourceWeightsHook', 'ema_update']
