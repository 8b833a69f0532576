"""The EMA teacher update of mean-teacher CTTA methods, as a test-time hook."""
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn
from mmengine.hooks import Hook

from mmseg.registry import HOOKS
from ..optimizers.trainable import PARAM_GROUPS, parameter_groups

EMA_BUFFER_MODES = ('keep', 'copy', 'average')


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float,
               buffers: str = 'keep',
               momenta: Optional[Mapping[str, float]] = None) -> None:
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
        momenta (Mapping[str, float], optional): Another momentum for some
            parameters, by name (ViDA's adapters: their own EMA rate).
    """
    t_params = [p for p in teacher.parameters()]
    s_named = list(student.named_parameters())
    if len(t_params) != len(s_named):
        raise ValueError('EMA teacher and student have different parameters')
    if not momenta:  # one kernel sequence for every parameter
        torch._foreach_lerp_(t_params, [s.detach() for _, s in s_named],
                             1.0 - momentum)
    else:
        by_rate: Dict[float, tuple] = {}
        for t, (name, s) in zip(t_params, s_named):
            ts, ss = by_rate.setdefault(momenta.get(name, momentum), ([], []))
            ts.append(t)
            ss.append(s.detach())
        for rate, (ts, ss) in by_rate.items():
            torch._foreach_lerp_(ts, ss, 1.0 - rate)
    if buffers == 'keep':
        return
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        if buffers == 'average' and tb.is_floating_point():
            tb.lerp_(sb, 1.0 - momentum)
        else:
            tb.copy_(sb)


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """The EMA update of a mean-teacher method's teacher from its student.

    In the CTTA loop's ``before_ctta`` hook point the hook binds its
    :meth:`update` to the method
    (:meth:`~mmseg_moase.methods.mean_teacher.MeanTeacherMethod.bind_teacher_update`);
    the method runs it after every step, once the teacher's prediction is scored
    and the student updated, and before its restore, so the update affects the
    *next* batch, as in CoTTA and MoASE. A mean-teacher method refuses to run
    without this hook.

    Args:
        momentum (float): Share of the teacher kept per step: 0.999 means
            ``teacher = 0.999 * teacher + 0.001 * student``. Defaults to 0.999.
        buffers (str): ``'keep'`` (default, CoTTA's code averages parameters only),
            ``'copy'`` or ``'average'``.
        group_momentum (dict, optional): A momentum per named parameter group
            (:data:`~mmseg_moase.engine.optimizers.trainable.PARAM_GROUPS`,
            declared by model parts); other parameters use ``momentum``. ViDA's
            released code keeps separate rates for its adapters and the rest.

    Example:
        >>> custom_hooks = [dict(type='EMATeacherHook', momentum=0.999)]
        >>> custom_hooks = [dict(type='EMATeacherHook', momentum=0.999,
        ...                      group_momentum=dict(vida=0.999))]
    """

    priority = 'NORMAL'

    def __init__(self, momentum: float = 0.999, buffers: str = 'keep',
                 group_momentum: Optional[Dict[str, float]] = None) -> None:
        group_momentum = dict(group_momentum or {})
        for name, value in [('momentum', momentum)] + [
                (f'group_momentum.{g}', m) for g, m in group_momentum.items()]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'EMATeacherHook `{name}` must lie in [0, 1], '
                                 f'got {value}')
        unknown = set(group_momentum) - set(PARAM_GROUPS)
        if unknown:
            raise ValueError(f'EMATeacherHook `group_momentum` names unknown '
                             f'groups {sorted(unknown)}; allowed: '
                             f'{list(PARAM_GROUPS)}')
        if buffers not in EMA_BUFFER_MODES:
            raise ValueError(f'EMATeacherHook `buffers` must be one of '
                             f'{list(EMA_BUFFER_MODES)}, got {buffers!r}')
        self.momentum = float(momentum)
        self.buffers = buffers
        self.group_momentum = {g: float(m) for g, m in group_momentum.items()}
        self._momenta: Optional[Dict[str, float]] = None

    def momenta(self, student: nn.Module) -> Dict[str, float]:
        """Per-parameter momenta of :attr:`group_momentum` (computed once)."""
        if self._momenta is None:
            self._momenta = {
                n: self.group_momentum[g]
                for g, names in parameter_groups(student).items()
                if g in self.group_momentum for n in names}
        return self._momenta

    def update(self, teacher: nn.Module, student: nn.Module) -> None:
        """``teacher <- momentum * teacher + (1 - momentum) * student``."""
        momenta = self.momenta(student) if self.group_momentum else None
        ema_update(teacher, student, self.momentum, self.buffers, momenta)

    def before_ctta(self, runner, method) -> None:
        """Bind :meth:`update` to a method that has a teacher."""
        bind = getattr(method, 'bind_teacher_update', None)
        if bind is not None:
            bind(self.update)
