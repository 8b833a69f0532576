"""Which parameters adapt at test time, in named groups.

The groups are those the registered methods declare (their ``param_groups``,
:class:`~mmseg_moase.models.ctta_parts.ParamGroup`) plus ``norm`` and
``other``; nothing here names a method or an adapter.
"""
from typing import Dict, List, Tuple

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...models.ctta_parts import (NORM_GROUP, OTHER_GROUP, TRAINABLE_MODES,
                                  ParamGroup, trains_group)
from ...registry import METHODS

NORM_TYPES = (nn.LayerNorm, _BatchNorm, nn.GroupNorm, nn.InstanceNorm2d)


def declared_param_groups() -> Dict[str, ParamGroup]:
    """Every parameter group a registered method declares, by name (the first
    declaration of a name wins; a subclass inherits its parent's)."""
    METHODS.import_from_location()
    out: Dict[str, ParamGroup] = {}
    for cls in list(METHODS.module_dict.values()):
        for group in getattr(cls, 'param_groups', ()):
            out.setdefault(group.name, group)
    return out


def known_param_groups() -> Tuple[str, ...]:
    """The group names a config may refer to: the declared ones, ``norm`` and
    ``other``."""
    return tuple(declared_param_groups()) + (NORM_GROUP, OTHER_GROUP)


def parameter_groups(model: nn.Module) -> Dict[str, List[str]]:
    """Sort every parameter name of ``model`` into one named group.

    Groups: the declared ones (:func:`declared_param_groups`: modules of the
    group's classes or with its ``ctta_param_group``; the innermost such
    module wins), ``norm`` (affine parameters of
    LayerNorm/BatchNorm/GroupNorm/InstanceNorm outside declared parts) and
    ``other`` (the rest). Parameters that no loss can reach (declared by
    ``gradient_free_parameter_names``) are left out of every group.

    Args:
        model (nn.Module): Any model; unwrap DDP before calling.

    Returns:
        dict[str, list[str]]: Group name -> parameter names, in module order
        (``norm`` and ``other`` always present).
    """
    declared = list(declared_param_groups().values())
    groups: Dict[str, List[str]] = {}
    owner: Dict[str, str] = {}
    gradient_free = set()
    in_part = set()
    # Outer modules first, so an inner declaration (the experts inside an
    # adapter) overwrites an outer one.
    for mod_name, mod in model.named_modules():
        prefix = f'{mod_name}.' if mod_name else ''
        names = getattr(mod, 'gradient_free_parameter_names', None)
        if callable(names):
            gradient_free.update(prefix + n for n in names())
        kind = getattr(mod, 'ctta_param_group', None)
        if kind is None:
            kind = next((g.name for g in declared if g.selects(mod)), None)
        if kind is not None:
            for p_name, _ in mod.named_parameters():
                owner[prefix + p_name] = kind
                in_part.add(prefix + p_name)
        elif isinstance(mod, NORM_TYPES):
            for p_name, _ in mod.named_parameters(recurse=False):
                if prefix + p_name not in in_part:
                    owner[prefix + p_name] = NORM_GROUP

    for name, _ in model.named_parameters():
        if name in gradient_free:
            continue
        groups.setdefault(owner.get(name, OTHER_GROUP), []).append(name)
    groups.setdefault(NORM_GROUP, [])
    groups.setdefault(OTHER_GROUP, [])
    return groups


def set_trainable(model: nn.Module, mode: str) -> Dict[str, List[str]]:
    """Freeze every parameter except those ``mode`` adapts.

    Args:
        model (nn.Module): The model (its ``requires_grad`` flags are set in place).
        mode (str): ``'all'`` (every weight and bias, as the public MoASE code),
            ``'adapters'`` (every declared group: the adapters),
            ``'adapters+norm'`` or ``'norm'`` (normalisation affine parameters
            only, as TENT).

    Returns:
        dict[str, list[str]]: The trainable parameters by group; frozen groups
        are empty.
    """
    if mode not in TRAINABLE_MODES:
        raise ValueError(f'`trainable` must be one of {list(TRAINABLE_MODES)}, '
                         f'got {mode!r}')
    groups = parameter_groups(model)
    selected = {g: (names if trains_group(mode, g) else [])
                for g, names in groups.items()}
    keep = {n for names in selected.values() for n in names}
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)
    return selected
