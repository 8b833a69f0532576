"""Homeostatic-Proximal (HP) loss of MoASE (paper Eq. 5 and its public code)."""
from typing import Dict, List, Mapping, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..adapters.moase import ExpertBank

HP_NORMS = ('squared', 'l2')


def expert_parameter_names(model: nn.Module) -> List[str]:
    """Names of the parameters of every MoASE expert bank in ``model``."""
    return [f'{mod_name}.{p_name}' if mod_name else p_name
            for mod_name, mod in model.named_modules()
            if isinstance(mod, ExpertBank)
            for p_name, _ in mod.named_parameters(recurse=True)]


def _as_params(src: Union[nn.Module, Mapping[str, Tensor]]) -> Dict[str, Tensor]:
    if isinstance(src, nn.Module):
        return dict(src.named_parameters())
    return dict(src)


def hp_loss(student: nn.Module,
            teacher: Union[nn.Module, Mapping[str, Tensor]],
            mu: float = 1.0,
            norm: str = 'squared') -> Tensor:
    """HP penalty pulling the student's expert parameters toward the teacher's.

    * ``'squared'`` (paper Eq. 5): ``mu / 2 * sum_t ||S_t - T_t||_2^2``;
    * ``'l2'`` (public code): ``mu / 2 * sum_t ||S_t - T_t||_2`` (not squared),

    summed over the expert tensors t of every adapter (not routers, not the backbone).
    The teacher's tensors are treated as constants.

    Args:
        student (nn.Module): The model being adapted.
        teacher (nn.Module | Mapping[str, Tensor]): The EMA teacher, or its named
            parameters, with the student's parameter names.
        mu (float): Weight. Defaults to 1.0.
        norm (str): ``'squared'`` or ``'l2'``.

    Returns:
        Tensor: Scalar loss (0 when the model has no experts).
    """
    if norm not in HP_NORMS:
        raise ValueError(f'HP loss option `norm` must be one of {list(HP_NORMS)}, '
                         f'got {norm!r}')
    s_params = dict(student.named_parameters())
    t_params = _as_params(teacher)
    names = expert_parameter_names(student)
    missing = [n for n in names if n not in t_params]
    if missing:
        raise KeyError('HP loss: the teacher lacks expert parameters '
                       f'{missing[:3]} (is it a copy of the student?)')
    total = None
    for n in names:
        diff = s_params[n] - t_params[n].detach()
        term = diff.pow(2).sum() if norm == 'squared' else diff.norm(p=2)
        total = term if total is None else total + term
    if total is None:
        return next(student.parameters()).new_zeros(())
    return 0.5 * mu * total

