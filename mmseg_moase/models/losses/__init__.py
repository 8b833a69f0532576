from .hp_loss import expert_parameter_names, hp_loss
from .weighted_ce import WeightedCrossEntropyLoss

__all__ = [
    'WeightedCrossEntropyLoss',
    'expert_parameter_names', 'hp_loss'
]
