"""The EMA teacher update of mean-teacher CTTA methods, as a test-time hook."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.hooks import Hook

from mmseg.registry import HOOKS

EMA_BUFFER_MODES = ('keep', 'copy', 'average')


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float,
               buffers: str = 'keep') -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student``, in place.

    Args:
        teacher (nn.Module): Updated in place.
        student (nn.Module): Same architecture and parameter names.
        momentum (float): The share the teacher keeps (0.999: keeps 99.9%). This is
            the CoTTA/mean-teacher convention, the *opposite* of mmengine's
            ``ExponentialMovingAverage.momentum`` (the student's share).
        buffers (str): ``'keep'`` (teacher buffers untouched, as CoTTA's code),
            ``'copy'`` (take the student's) or ``'average'`` (EMA like parameters;
            integer buffers such as BN's batch counter are copied).
    """
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError('EMA teacher and student have different parameters')
    torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)
    if buffers == 'keep':
        return
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        if buffers == 'average' and tb.is_floating_point():
            tb.lerp_(sb, 1.0 - momentum)
        else:
            tb.copy_(sb)


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """Update the CTTA method's teacher from its student after every test step.

    Runs in ``after_test_iter``: the CTTA loop has already predicted (with the
    teacher), adapted the student and handed the scored batch to the evaluator, so
    the update affects the *next* batch, as in CoTTA and MoASE. Methods whose
    ``needs_teacher`` is true refuse to run without this hook.

    Args:
        momentum (float): Share of the teacher kept per step: 0.999 means
            ``teacher = 0.999 * teacher + 0.001 * student``. Defaults to 0.999.
        buffers (str): ``'keep'`` (default, CoTTA's code averages parameters only),
            ``'copy'`` or ``'average'``.

    Example:
        >>> custom_hooks = [dict(type='EMATeacherHook', momentum=0.999)]
    """

    priority = 'NORMAL'

    def __init__(self, momentum: float = 0.999, buffers: str = 'keep') -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'EMATeacherHook `momentum` must lie in [0, 1], got '
                             f'{momentum}')
        if buffers not in EMA_BUFFER_MODES:
            raise ValueError(f'EMATeacherHook `buffers` must be one of '
                             f'{list(EMA_BUFFER_MODES)}, got {buffers!r}')
        self.momentum = float(momentum)
        self.buffers = buffers

    def after_test_iter(self, runner, batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        method = getattr(runner.test_loop, 'method', None)
        if method is None or getattr(method, 'teacher', None) is None:
            return
        ema_update(method.teacher, method.segmentor, self.momentum, self.buffers)
