from .hp_loss import HomeostaticProximalLoss, expert_parameter_names, hp_loss
from .weighted_ce import WeightedCrossEntropyLoss

__all__ = [
    'HomeostaticProximalLoss', 'WeightedCrossEntropyLoss',
    'expert_parameter_names', 'hp_loss'
]
