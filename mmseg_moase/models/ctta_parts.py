"""The small interface through which model parts tell generic CTTA code about
themselves, so that the loop, the optimiser constructor and the methods never
import a specific adapter.

A module may declare:

* ``ctta_param_group`` (class attribute, str): the named parameter group its
  parameters belong to (e.g. ``'experts'``, ``'routers'``); the innermost
  declaring module wins. Read by
  :func:`~mmseg_moase.engine.optimizers.trainable.parameter_groups`.
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
from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn


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
