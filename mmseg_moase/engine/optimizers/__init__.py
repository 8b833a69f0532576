from .constructor import TrainableGroupsOptimWrapperConstructor
from .trainable import (PARAM_GROUPS, TRAINABLE_MODES, parameter_groups,
                        set_trainable)

__all__ = [
    'TrainableGroupsOptimWrapperConstructor', 'PARAM_GROUPS',
    'TRAINABLE_MODES', 'parameter_groups', 'set_trainable'
]
