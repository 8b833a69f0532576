"""MoASE++'s learned augmentation policy and its REINFORCE learner.

The policy reads the student's state on the clean image, ``s = (mean entropy,
mean max-probability)``, and draws three augmentation strengths ``a`` in (0, 1)
(geometry, colour, noise; :mod:`.opd_augment` turns them into an augmentation):
a small MLP gives the mean ``mu`` of a diagonal Gaussian with a learned
log-standard-deviation, a sample ``z`` is squashed ``a = 0.5 + 0.5 tanh(z)``.
The learner trains it by REINFORCE with an exponential-moving-average reward
baseline, an entropy bonus and its own Adam; the reward (computed by the
method) is ``-KL - strength_penalty * mean(a ** 2)``.
"""
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal

#: The strengths the policy draws, in order.
STRENGTH_NAMES = ('geometry', 'colour', 'noise')


def squash(z: Tensor) -> Tensor:
    """``a = 0.5 + 0.5 tanh(z)``: a Gaussian sample mapped into (0, 1)."""
    return 0.5 + 0.5 * torch.tanh(z)


def squashed_log_prob(dist: Normal, z: Tensor) -> Tensor:
    """Log-density of ``a = squash(z)`` for ``z ~ dist``, summed over the last
    dimension (the strengths).

    Change of variables: ``log p(a) = log N(z) - log |da/dz|`` with
    ``da/dz = 0.5 (1 - tanh(z)^2)`` and
    ``log(1 - tanh(z)^2) = 2 (log 2 - z - softplus(-2 z))`` (stable for large
    ``|z|``).

    Args:
        dist (Normal): The Gaussian over the pre-squash values.
        z (Tensor): The pre-squash sample (..., 3).

    Returns:
        Tensor: ``log p(a)`` (...,).
    """
    log_det = math.log(0.5) + 2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z))
    return (dist.log_prob(z) - log_det).sum(-1)


class AugmentationPolicy(nn.Module):
    """The policy network: state (2,) -> Gaussian over 3 pre-squash strengths.

    Args:
        in_dim (int): State size. Defaults to 2 (mean entropy, confidence).
        hidden (int): Width of the two hidden ReLU layers. Defaults to 32.
        init_std (float): Initial standard deviation of every strength's
            Gaussian. Defaults to 0.5.
    """

    def __init__(self, in_dim: int = 2, hidden: int = 32,
                 init_std: float = 0.5) -> None:
        super().__init__()
        if init_std <= 0:
            raise ValueError(f'policy init_std must be > 0, got {init_std}')
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.mean_head = nn.Linear(hidden, len(STRENGTH_NAMES))
        self.log_std = nn.Parameter(
            torch.full((len(STRENGTH_NAMES), ), math.log(init_std)))

    def forward(self, state: Tensor) -> Normal:
        """The Gaussian over the pre-squash strengths for ``state`` (..., 2)."""
        mu = self.mean_head(self.net(state))
        return Normal(mu, self.log_std.exp().expand_as(mu))

    def sample(self, state: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Draw strengths for ``state``.

        Returns:
            tuple: ``a`` (3,) in (0, 1), detached; ``log p(a)`` and the
            Gaussian's entropy (scalars, with the policy's graph).
        """
        dist = self(state)
        z = dist.sample()
        return squash(z), squashed_log_prob(dist, z), dist.entropy().sum(-1)


class PolicyLearner:
    """The policy, its Adam and its reward baseline: acts and learns.

    Args:
        lr (float): The policy's Adam learning rate. Defaults to 1e-4.
        entropy_coef (float): Weight of the entropy bonus. Defaults to 1e-3.
        strength_penalty (float): ``lambda`` of the reward's
            ``-lambda * mean(a ** 2)``. Defaults to 0.1.
        baseline_momentum (float): EMA momentum of the reward baseline
            (which starts at 0). Defaults to 0.9.
        hidden (int): The policy's hidden width. Defaults to 32.
        init_std (float): The policy's initial standard deviation. 0.5.
        device (torch.device, optional): Where the policy lives.
    """

    def __init__(self, lr: float = 1e-4, entropy_coef: float = 1e-3,
                 strength_penalty: float = 0.1,
                 baseline_momentum: float = 0.9, hidden: int = 32,
                 init_std: float = 0.5,
                 device: Optional[torch.device] = None) -> None:
        if not 0.0 <= baseline_momentum <= 1.0:
            raise ValueError('policy baseline_momentum must lie in [0, 1], '
                             f'got {baseline_momentum}')
        self.policy = AugmentationPolicy(hidden=hidden,
                                         init_std=init_std).to(device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.entropy_coef = float(entropy_coef)
        self.strength_penalty = float(strength_penalty)
        self.baseline_momentum = float(baseline_momentum)
        self.baseline = torch.zeros((), device=device)

    def act(self, state: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """:meth:`AugmentationPolicy.sample` on the policy's device, float32."""
        param = self.policy.log_std
        return self.policy.sample(state.to(param.device, param.dtype))

    @torch.no_grad()
    def mean_strengths(self, state: Tensor) -> Tensor:
        """The squashed Gaussian mean ``0.5 + 0.5 tanh(mu)`` for ``state``."""
        param = self.policy.log_std
        return squash(self.policy(state.to(param.device, param.dtype)).loc)

    def reward(self, kl: Tensor, strengths: Tensor) -> Tensor:
        """``-kl - strength_penalty * mean(strengths ** 2)``, detached."""
        return (-kl.detach().float().to(strengths.device) -
                self.strength_penalty * strengths.detach().pow(2).mean())

    def update(self, log_probs: List[Tensor], entropies: List[Tensor],
               rewards: List[Tensor]) -> Dict[str, float]:
        """One REINFORCE step on the views of one adaptation step.

        The advantage is each reward minus the baseline from before this step;
        then the baseline moves toward the views' mean reward. Loss:
        ``-mean(advantage * log p(a)) - entropy_coef * mean(entropy)``.

        Returns:
            dict[str, float]: ``advantage`` (mean) and ``baseline`` (new).
        """
        rewards_t = torch.stack(rewards)
        adv = rewards_t - self.baseline
        m = self.baseline_momentum
        self.baseline = m * self.baseline + (1 - m) * rewards_t.mean()
        loss = -(adv.detach() * torch.stack(log_probs)).mean() - \
            self.entropy_coef * torch.stack(entropies).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return dict(advantage=float(adv.mean()),
                    baseline=float(self.baseline))

    def state_dict(self) -> Dict[str, Any]:
        """The policy's parameters, its Adam state and the baseline."""
        return dict(policy=self.policy.state_dict(),
                    optimizer=self.optimizer.state_dict(),
                    baseline=self.baseline.detach().clone())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.policy.load_state_dict(state['policy'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.baseline = state['baseline'].to(self.baseline.device)
