"""An optimiser-wrapper constructor aware of the test-time ``trainable`` groups."""
import inspect
from typing import Dict, List, Optional

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

# mmengine's root registries: visible from mmseg's child registries and from a
# plain ``mmengine.optim.build_optim_wrapper`` call outside any default scope.
from mmengine.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS)
from .trainable import known_param_groups, parameter_groups, set_trainable


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus two ``paramwise_cfg`` keys.

    * ``trainable`` (str, optional): freeze all but the groups of this mode (see
      :func:`set_trainable`); frozen parameters are left out of the optimiser.
    * ``group_lr`` (dict, optional): a learning rate per named group (those
      the registered methods declare, ``norm``, ``other``; see
      :func:`~.trainable.known_param_groups`); groups not named keep the
      optimiser's ``lr`` (times any ``custom_keys`` multiplier).

    Every other ``paramwise_cfg`` key (``custom_keys``, ``norm_decay_mult``...) works
    as in :class:`DefaultOptimWrapperConstructor`. Parameters with equal settings end
    up in one optimiser group so that foreach/fused kernels stay effective.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='TrainableGroupsOptimWrapperConstructor',
        ...     optimizer=dict(type='Adam', lr=7.5e-6, betas=(0.9, 0.99)),
        ...     paramwise_cfg=dict(trainable='all',
        ...                        group_lr=dict(norm=2e-4)))
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        self.trainable = paramwise_cfg.pop('trainable', None)
        self.group_lr: Dict[str, float] = dict(
            paramwise_cfg.pop('group_lr', None) or {})
        known = known_param_groups()
        unknown = set(self.group_lr) - set(known)
        if unknown:
            raise ValueError(f'`paramwise_cfg.group_lr` names unknown groups '
                             f'{sorted(unknown)}; allowed: {list(known)}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):
            model = model.module
        if self.trainable is not None:
            set_trainable(model, self.trainable)
        group_of = {}
        for group, names in parameter_groups(model).items():
            group_of.update({n: group for n in names})
        name_of = {id(p): n for n, p in model.named_parameters()}

        params: List[dict] = []
        if self.paramwise_cfg:
            self.add_params(params, model)
        else:
            params = [dict(params=[p]) for p in model.parameters()]
        merged: Dict[tuple, dict] = {}
        for group in params:
            (param, ) = group['params']
            if not param.requires_grad:
                continue
            settings = {k: v for k, v in group.items() if k != 'params'}
            named = group_of.get(name_of[id(param)])
            if named in self.group_lr:
                settings['lr'] = self.group_lr[named]
            key = tuple(sorted(settings.items()))
            merged.setdefault(key, dict(settings, params=[]))['params'].append(
                param)
        if not merged:
            raise ValueError('No parameter is left to optimise: check '
                             f'`paramwise_cfg.trainable` ({self.trainable!r}).')

        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cls = optimizer_cfg['type']
        if isinstance(optimizer_cls, str):
            with OPTIMIZERS.switch_scope_and_registry(None) as registry:
                optimizer_cls = registry.get(optimizer_cfg['type'])
        first_arg = next(iter(inspect.signature(optimizer_cls).parameters))
        optimizer_cfg[first_arg] = list(merged.values())
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper_cfg,
                                    default_args=dict(optimizer=optimizer))
