from .hp_loss import HomeostaticProximalLoss, expert_parameter_names, hp_loss

__all__ = ['HomeostaticProximalLoss', 'expert_parameter_names', 'hp_loss']
