"""Which parameters adapt at test time, in named groups."""
from typing import Dict, List

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


TRAINABLE_MODES = ('all', 'adapters', 'adapters+norm', 'norm')
#: Groups model parts declare (``ctta_param_group``: MoASE's ``experts`` and
#: ``routers``, ViDA's ``vida``), then the two every model has.
ADAPTER_GROUPS = ('experts', 'routers', 'vida')
PARAM_GROUPS = ADAPTER_GROUPS + ('norm', 'other')
NORM_TYPES = (nn.LayerNorm, _BatchNorm, nn.GroupNorm, nn.InstanceNorm2d)

# Groups each mode trains ('adapters': whatever adapter a model carries).
_MODE_GROUPS = {
    'all': PARAM_GROUPS,
    'adapters': ADAPTER_GROUPS,
    'adapters+norm': ADAPTER_GROUPS + ('norm', ),
    'norm': ('norm', ),
}


def parameter_groups(model: nn.Module) -> Dict[str, List[str]]:
    """Sort every parameter name of ``model`` into one named group.

    Groups: those model parts declare (``ctta_param_group``, see
    :mod:`mmseg_moase.models.ctta_parts`; MoASE: ``experts`` for the expert
    banks, ``routers`` for the ASG and DAG gates; ViDA: ``vida``), ``norm`` (affine parameters of
    LayerNorm/BatchNorm/GroupNorm/InstanceNorm outside declared parts) and
    ``other`` (the rest). Parameters that no loss can reach (declared by
    ``gradient_free_parameter_names``: the ASG router when ``asg_grad='none'``)
    are left out of every group.

    Args:
        model (nn.Module): Any model; unwrap DDP before calling.

    Returns:
        dict[str, list[str]]: Group name -> parameter names, in module order.
    """
    groups: Dict[str, List[str]] = {g: [] for g in PARAM_GROUPS}
    owner: Dict[str, str] = {}
    gradient_free = set()
    declared = set()
    # Outer modules first, so an inner declaration (the experts inside an
    # adapter) overwrites an outer one.
    for mod_name, mod in model.named_modules():
        prefix = f'{mod_name}.' if mod_name else ''
        names = getattr(mod, 'gradient_free_parameter_names', None)
        if callable(names):
            gradient_free.update(prefix + n for n in names())
        kind = getattr(mod, 'ctta_param_group', None)
        if kind is not None:
            for p_name, _ in mod.named_parameters():
                owner[prefix + p_name] = kind
                declared.add(prefix + p_name)
        elif isinstance(mod, NORM_TYPES):
            for p_name, _ in mod.named_parameters(recurse=False):
                if prefix + p_name not in declared:
                    owner[prefix + p_name] = 'norm'

    for name, _ in model.named_parameters():
        if name in gradient_free:
            continue
        groups.setdefault(owner.get(name, 'other'), []).append(name)
    return groups


def set_trainable(model: nn.Module, mode: str) -> Dict[str, List[str]]:
    """Freeze every parameter except those ``mode`` adapts.

    Args:
        model (nn.Module): The model (its ``requires_grad`` flags are set in place).
        mode (str): ``'all'`` (every weight and bias, as the public MoASE code),
            ``'adapters'`` (the adapters' groups: MoASE's experts and routers,
            ViDA's branches), ``'adapters+norm'`` or ``'norm'``
            (normalisation affine parameters only, as TENT).

    Returns:
        dict[str, list[str]]: The trainable parameters by group (``experts``,
        ``routers``, ``norm``, ``other``); frozen groups are empty.
    """
    if mode not in TRAINABLE_MODES:
        raise ValueError(f'`trainable` must be one of {list(TRAINABLE_MODES)}, '
                         f'got {mode!r}')
    groups = parameter_groups(model)
    selected = {g: (names if g in _MODE_GROUPS[mode] else [])
                for g, names in groups.items()}
    keep = {n for names in selected.values() for n in names}
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)
    return selected
