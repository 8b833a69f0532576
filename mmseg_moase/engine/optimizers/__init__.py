from .constructor import TrainableGroupsOptimWrapperConstructor
from .trainable import (TRAINABLE_MODES, declared_param_groups,
                        known_param_groups, parameter_groups, set_trainable)

__all__ = [
    'TrainableGroupsOptimWrapperConstructor', 'TRAINABLE_MODES',
    'declared_param_groups', 'known_param_groups', 'parameter_groups',
    'set_trainable'
]
