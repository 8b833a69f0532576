"""The EMA teacher update of mean-teacher CTTA methods, as a test-time hook."""
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn
from mmengine.hooks import Hook

from mmseg.registry import HOOKS
from ..optimizers.trainable import known_param_groups, parameter_groups

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
            parameters, by name (a parameter group's own EMA rate).
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

    The momenta are the method's declarations unless the config sets them:
    the method's ``ema_momentum`` for every parameter and each declared
    parameter group's ``momentum``
    (:class:`~mmseg_moase.models.ctta_parts.ParamGroup`) for its own.

    Args:
        momentum (float, optional): Share of the teacher kept per step: 0.999
            means ``teacher = 0.999 * teacher + 0.001 * student``. None
            (default): the method's ``ema_momentum``.
        buffers (str): ``'keep'`` (default, CoTTA's code averages parameters only),
            ``'copy'`` or ``'average'``.
        group_momentum (dict, optional): A momentum per named parameter group
            (:func:`~mmseg_moase.engine.optimizers.trainable.known_param_groups`),
            over the method's declared ones; other parameters use ``momentum``.

    Example:
        >>> custom_hooks = [dict(type='EMATeacherHook')]
        >>> custom_hooks = [dict(type='EMATeacherHook', momentum=0.99,
        ...                      group_momentum=dict(norm=0.9))]
    """

    priority = 'NORMAL'

    def __init__(self, momentum: Optional[float] = None, buffers: str = 'keep',
                 group_momentum: Optional[Dict[str, float]] = None) -> None:
        group_momentum = dict(group_momentum or {})
        _check_momenta(momentum, group_momentum)
        known = known_param_groups()
        unknown = set(group_momentum) - set(known)
        if unknown:
            raise ValueError(f'EMATeacherHook `group_momentum` names unknown '
                             f'groups {sorted(unknown)}; allowed: '
                             f'{list(known)}')
        if buffers not in EMA_BUFFER_MODES:
            raise ValueError(f'EMATeacherHook `buffers` must be one of '
                             f'{list(EMA_BUFFER_MODES)}, got {buffers!r}')
        self.momentum = None if momentum is None else float(momentum)
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
        if self.momentum is None:
            raise ValueError('EMATeacherHook has no momentum: set `momentum`, '
                             'or bind it to a method that declares '
                             '`ema_momentum` (before_ctta).')
        momenta = self.momenta(student) if self.group_momentum else None
        ema_update(teacher, student, self.momentum, self.buffers, momenta)

    def before_ctta(self, runner, method) -> None:
        """Bind :meth:`update` to a method that has a teacher, taking the
        momenta the method declares where the config sets none."""
        bind = getattr(method, 'bind_teacher_update', None)
        if bind is None:
            return
        if self.momentum is None:
            self.momentum = getattr(method, 'ema_momentum', None)
        declared = {g.name: g.momentum
                    for g in getattr(method, 'param_groups', ())
                    if g.momentum is not None}
        self.group_momentum = dict(declared, **self.group_momentum)
        _check_momenta(self.momentum, self.group_momentum)
        self._momenta = None
        bind(self.update)


def _check_momenta(momentum: Optional[float],
                   group_momentum: Mapping[str, float]) -> None:
    """Every momentum given lies in [0, 1]."""
    for name, value in [('momentum', momentum)] + [
            (f'group_momentum.{g}', m) for g, m in group_momentum.items()]:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f'EMATeacherHook `{name}` must lie in [0, 1], '
                             f'got {value}')
