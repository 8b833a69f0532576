"""The small interface through which model parts tell generic CTTA code about
themselves, so that the loop, the optimiser constructor and the methods never
import a specific adapter.

A module may declare:

* ``ctta_param_group`` (class attribute, str): the named parameter group its
  parameters belong to (e.g. ``'experts'``, ``'routers'``); the innermost
  declaring module wins. Read by
  :func:`~mmseg_moase.engine.optimizers.trainable.parameter_groups` for the
  groups methods declare (:class:`ParamGroup`).
* ``gradient_free_parameter_names() -> list[str]``: its parameters (relative
  names) that no loss can reach, left out of every group.
* ``batch_groups`` (int attribute, 1 by default): how many independent batches
  its input stacks, for a module whose forward computes a statistic over the
  batch (MoASE's ASG keep ratios). Set through :func:`batch_groups`.
* ``rank_statistics`` (bool attribute, False by default): for the same module,
  whether that statistic is of the global batch of all ranks (one collective
  per forward, so every rank must run the same forwards, as the CTTA loop's
  ranks do). Set by the loop on several processes through
  :func:`use_rank_statistics`.
"""
import dataclasses
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple, Type

import torch.nn as nn

#: The groups every model has besides the declared ones: normalisation affine
#: parameters outside declared parts, and the rest.
NORM_GROUP, OTHER_GROUP = 'norm', 'other'
#: What a method may adapt: every group, the declared (adapter) groups, those
#: and ``norm``, or ``norm`` alone.
TRAINABLE_MODES = ('all', 'adapters', 'adapters+norm', 'norm')


def trains_group(mode: str, group: str) -> bool:
    """Whether trainable mode ``mode`` (:data:`TRAINABLE_MODES`) adapts the
    parameters of ``group``: ``'adapters'`` means every declared group, i.e.
    every group but ``norm`` and ``other``."""
    if mode == 'all':
        return True
    if group == NORM_GROUP:
        return mode in ('adapters+norm', 'norm')
    return group != OTHER_GROUP and mode in ('adapters', 'adapters+norm')


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """A named parameter group a CTTA method declares (its adapters').

    A method lists its groups in its class attribute ``param_groups``; the
    generic code reads nothing else: the optimiser constructor (the group's
    learning rate, ``paramwise_cfg.group_lr``, and ``trainable='adapters'``),
    the EMA teacher hook (the group's momentum) and the drift telemetry
    (``drift.<model>.<name>``).

    Args:
        name (str): The group's name (the key of ``group_lr`` and of the EMA
            hook's ``group_momentum``).
        modules (tuple[type], optional): Module classes whose parameters form
            the group. Empty (default): the modules whose ``ctta_param_group``
            attribute is ``name`` (a model part declaring itself). Either way
            the innermost selected module wins.
        lr_option (str, optional): The method's constructor option that holds
            the group's learning rate (its default lives in that signature);
            None: the optimiser's ``lr``.
        momentum (float, optional): The group's EMA momentum (the teacher's
            share kept per step); None: the teacher's ``ema_momentum``.
    """

    name: str
    modules: Tuple[Type[nn.Module], ...] = ()
    lr_option: Optional[str] = None
    momentum: Optional[float] = None

    def __post_init__(self) -> None:
        if self.name in (NORM_GROUP, OTHER_GROUP):
            raise ValueError(f'parameter group name {self.name!r} is reserved')
        if self.momentum is not None and not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f'group {self.name!r}: momentum must lie in '
                             f'[0, 1], got {self.momentum}')

    def selects(self, module: nn.Module) -> bool:
        """Whether ``module``'s parameters belong to this group."""
        if self.modules:
            return isinstance(module, self.modules)
        return getattr(module, 'ctta_param_group', None) == self.name


@contextmanager
def batch_groups(model: nn.Module, groups: int) -> Iterator[None]:
    """Make ``model``'s batch-statistic modules treat each batch as ``groups``
    batches.

    A module that averages a statistic over its whole batch (MoASE's ASG keep
    ratios) would share it across several independent batches stacked into one
    forward (the unflipped and flipped view of an image) where separate forwards
    compute one each. Inside this context every module with a ``batch_groups``
    attribute splits its batch into ``groups`` equal chunks along the batch axis
    and runs them one after the other, as separate forwards would. No-op for
    ``groups=1`` or a model without such modules.

    Args:
        model (nn.Module): Any model.
        groups (int): Number of equal-size batches stacked in each input.
    """
    modules = [] if groups == 1 else [
        m for m in model.modules() if hasattr(m, 'batch_groups')]
    for m in modules:
        m.batch_groups = groups
    try:
        yield
    finally:
        for m in modules:
            m.batch_groups = 1


def use_rank_statistics(model: nn.Module) -> int:
    """Make every batch-statistic module of ``model`` compute its statistic
    over the global batch of all ranks (:func:`~mmseg_moase.models.sync_bn.global_mean`),
    so W processes of b images compute what one process of W*b images does.
    Copies made afterwards (a teacher, an anchor) inherit it. Returns how many
    modules it set."""
    modules = [m for m in model.modules() if hasattr(m, 'rank_statistics')]
    for m in modules:
        m.rank_statistics = True
    return len(modules)
