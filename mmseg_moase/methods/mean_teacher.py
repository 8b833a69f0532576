"""The mean-teacher step order, in one place, for every EMA-teacher method."""
import copy
from typing import Callable, Optional

import torch.nn as nn

from .base import BaseCTTAMethod

#: ``update(teacher, student)``: the teacher update bound by a hook.
TeacherUpdate = Callable[[nn.Module, nn.Module], None]


class MeanTeacherMethod(BaseCTTAMethod):
    """Base of the methods whose scored model is an EMA teacher of the student
    (CoTTA, MoASE, ViDA). It owns the order of every step:

    1. :meth:`step` (the subclass): the teacher labels the batch, the student
       takes one update on it; the teacher's prediction is returned (scored).
    2. The loop scores it and runs the ``after_test_iter`` hooks (logging).
    3. :meth:`after_step`, here: the teacher update, then :meth:`restore`
       (CoTTA's stochastic restore of the student).

    The teacher update's rule and options live in the registered
    :class:`~mmseg_moase.engine.hooks.EMATeacherHook` (``custom_hooks``),
    which binds it in the loop's ``before_ctta`` hook point
    (:meth:`bind_teacher_update`); :meth:`ready` refuses a run without it. A
    new teacher-based method subclasses this (or :class:`CoTTA`) and writes
    :meth:`step`; neither the hook nor the loop changes.
    """

    scores_teacher = True
    #: The EMA teacher's momentum (share of the teacher kept per step), used
    #: by ``EMATeacherHook`` unless the config sets its ``momentum``.
    ema_momentum = 0.999

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._teacher_update: Optional[TeacherUpdate] = None

    def setup(self, model: nn.Module) -> None:
        """Builds the optimiser, then the teacher: a frozen copy of the
        student (after the optimiser chose what trains)."""
        super().setup(model)
        self.teacher = self.frozen_copy(self.segmentor)

    @staticmethod
    def frozen_copy(model: nn.Module) -> nn.Module:
        m = copy.deepcopy(model).eval()
        m.requires_grad_(False)
        return m

    def bind_teacher_update(self, update: TeacherUpdate) -> None:
        """Called by the teacher hook: ``update(teacher, student)`` runs after
        every step, before :meth:`restore`."""
        self._teacher_update = update

    def ready(self) -> None:
        if self._teacher_update is None:
            raise ValueError(
                f'{type(self).__name__} needs an EMA teacher: add '
                "dict(type='EMATeacherHook') to custom_hooks.")

    def after_step(self) -> None:
        self._teacher_update(self.teacher, self.segmentor)
        self.restore()

    def restore(self) -> None:
        """After the teacher update: reset what the method resets (none here)."""
