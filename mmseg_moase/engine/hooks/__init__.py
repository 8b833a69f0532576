from .ema_teacher_hook import EMATeacherHook, ema_update

__all__ = ['EMATeacherHook', 'ema_update']
