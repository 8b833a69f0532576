"""MoASE++: MoASE plus on-policy distillation on a policy-augmented image."""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from mmseg.structures import SegDataSample
from ..models.losses.hp_loss import hp_loss
from ..registry import METHODS
from ..utils.dist import is_distributed
from .base import soft_ce_loss
from .moase import MoASE
from .opd_augment import augment_inputs
from .opd_policy import STRENGTH_NAMES, PolicyLearner


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor,
               temperature: float) -> Tensor:
    """``T^2 * KL(p_student || p_teacher)`` at temperature T, per pixel.

    Both (B, C, H, W); the sum over the classes (dim 1), then the mean over
    the images and pixels. The teacher's logits carry no gradient.
    """
    t = float(temperature)
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_t = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
    return (log_s.exp() * (log_s - log_t)).sum(1).mean() * t ** 2


def policy_state(logits: Tensor) -> Tensor:
    """``(mean entropy, mean max-probability)`` of the softmax of ``logits``
    (B, C, H, W) over images and pixels: the policy's input, (2,)."""
    log_p = F.log_softmax(logits.detach().float(), dim=1)
    p = log_p.exp()
    return torch.stack([-(p * log_p).sum(1).mean(), p.amax(1).mean()])


@METHODS.register_module()
class MoASEPP(MoASE):
    """MoASE++ (the MoASE authors' on-policy distillation, arXiv 2605.17743)
    for segmentation.

    MoASE's model, teacher, optimiser, EMA teacher and stochastic restore; per
    step, in order: the student's soft cross-entropy against the teacher's
    probabilities on the image (backward); the policy draws strengths from the
    student's clean prediction (mean entropy, mean confidence) and the
    network's input tensor (after the data preprocessor) is augmented with
    them; the student and the teacher (no gradient) predict the augmented
    input and ``weight / views * T^2 * KL(p_student || p_teacher)`` at
    temperature T is back-propagated, once per view; the optimiser step; the
    policy's REINFORCE step (reward ``-KL - penalty * mean(a^2)``); then the
    teacher update and the restore. The scored output is the teacher's
    prediction as in MoASE. The HP loss is off by default (``hp_mu=0``).

    Args:
        opd_temperature (float): T. Defaults to 2.
        opd_weight (float): w, the KL term's weight (0 turns the distillation
            and the policy off: MoASE with soft CE). Defaults to 1.
        opd_views (int): Augmented views per step (each its own policy
            sample; the KL terms are averaged). Defaults to 1.
        policy_lr (float): The policy's Adam rate. Defaults to 1e-4.
        policy_entropy (float): Entropy bonus weight. Defaults to 1e-3.
        policy_strength_penalty (float): Reward's strength penalty. 0.1.
        policy_baseline_momentum (float): Reward baseline EMA momentum. 0.9.
        policy_hidden (int): The policy MLP's hidden width. Defaults to 32.
        policy_init_std (float): The policy's initial std. Defaults to 0.5.
        fixed_strength (float | Sequence[float], optional): Augment at these
            strengths (one for all three, or geometry / colour / noise)
            instead of learning them: no policy (an ablation). Default None.
        loss (str): Must be ``'soft_ce'`` (MoASE++'s loss on the image).
        hp_mu (float): MoASE's HP loss weight. Defaults to 0 (dropped).
        **kwargs: Every other :class:`MoASE` option.
    """

    #: MoASE's log-line entries, the KL, the reward and the policy's means.
    telemetry_keys = MoASE.telemetry_keys + ('opd.', 'policy.reward',
                                             'policy.mean.')
    #: MoASE's expert panel, and the augmentation strengths per pass: the
    #: policy's squashed mean (solid) and the strengths drawn (dotted).
    telemetry_panels = MoASE.telemetry_panels + (dict(
        pattern=r'^policy\.(?P<kind>mean|strength)\.'
        r'(?P<series>geometry|colour|noise)$',
        kinds=dict(mean=dict(marker='o', label='policy mean'),
                   strength=dict(ls=':', label='drawn')),
        ylabel='augmentation strength', ylim=(-0.02, 1.02)), )

    def __init__(self, opd_temperature: float = 2.0, opd_weight: float = 1.0,
                 opd_views: int = 1, policy_lr: float = 1e-4,
                 policy_entropy: float = 1e-3,
                 policy_strength_penalty: float = 0.1,
                 policy_baseline_momentum: float = 0.9,
                 policy_hidden: int = 32, policy_init_std: float = 0.5,
                 fixed_strength: Optional[Union[float, Sequence[float]]] = None,
                 loss: str = 'soft_ce', hp_mu: float = 0.0,
                 **kwargs) -> None:
        if loss != 'soft_ce':
            raise ValueError("MoASEPP option `loss` must be 'soft_ce' (its "
                             f'loss on the image), got {loss!r}')
        if opd_temperature <= 0 or opd_weight < 0:
            raise ValueError('MoASEPP needs `opd_temperature` > 0 and '
                             f'`opd_weight` >= 0, got {opd_temperature}, '
                             f'{opd_weight}')
        if not isinstance(opd_views, int) or opd_views < 1:
            raise ValueError('MoASEPP option `opd_views` must be an integer '
                             f'>= 1, got {opd_views!r}')
        super().__init__(loss=loss, hp_mu=hp_mu, **kwargs)
        self.opd_temperature = float(opd_temperature)
        self.opd_weight = float(opd_weight)
        self.opd_views = opd_views
        self.policy_cfg = dict(
            lr=policy_lr, entropy_coef=policy_entropy,
            strength_penalty=policy_strength_penalty,
            baseline_momentum=policy_baseline_momentum, hidden=policy_hidden,
            init_std=policy_init_std)
        self.fixed_strength = self._check_fixed(fixed_strength)
        self.learner: Optional[PolicyLearner] = None
        self._clean: Optional[Tuple[Tensor, List[dict], Tensor]] = None

    @staticmethod
    def _check_fixed(value) -> Optional[Tuple[float, ...]]:
        if value is None:
            return None
        values = [value] * 3 if isinstance(value, (int, float)) else \
            list(value)
        if len(values) != 3 or not all(0 <= float(v) <= 1 for v in values):
            raise ValueError('MoASEPP option `fixed_strength` must be one '
                             'strength or three (geometry, colour, noise) in '
                             f'[0, 1], got {value!r}')
        return tuple(float(v) for v in values)

    def setup(self, model) -> None:
        if is_distributed():
            raise ValueError(
                'MoASEPP runs on one process: its augmentation policy is not '
                'synchronised across ranks. Run it without --launcher.')
        super().setup(model)
        if self.fixed_strength is None:
            device = next(self.segmentor.parameters()).device
            self.learner = PolicyLearner(device=device, **self.policy_cfg)

    # ------------------------------------------------------------------ step
    def student_loss(self, view: dict, labels: Sequence[Tensor],
                     probs: Optional[Sequence[Tensor]]) -> Dict[str, Tensor]:
        """MoASE's soft CE on the image; keeps the clean input, metainfo and
        the student's logits for the distillation."""
        inputs, samples = self.preprocess(self.model, view)
        metas = [s.metainfo for s in samples]
        if self.telemetry:
            self._student_preds = []
        logits: List[Tensor] = []
        losses = dict(loss_soft_ce=soft_ce_loss(
            self.segmentor, inputs, metas, probs, self._student_preds,
            logits_out=logits))
        self._clean = (inputs.detach(), metas, logits[0])
        if self.hp_mu > 0:
            losses['loss_hp'] = hp_loss(self.segmentor, self.teacher,
                                        self.hp_mu, self.hp_norm)
        return losses

    def _backward(self, loss: Tensor) -> bool:
        """Accumulate ``loss``'s gradient unless it is not finite."""
        if not bool(torch.isfinite(loss)):
            return False
        self.optim_wrapper.backward(loss)
        return True

    def _augment(self, inputs: Tensor, strengths: Tensor) -> Tensor:
        dp = self.segmentor.data_preprocessor
        if getattr(dp, '_enable_normalize', False):
            mean, std = dp.mean, dp.std
        else:
            mean, std = inputs.new_zeros(3, 1, 1), inputs.new_ones(3, 1, 1)
        rgb = bool(getattr(dp, 'channel_conversion', True))
        with torch.autocast(inputs.device.type, enabled=False):
            return augment_inputs(inputs, strengths, mean, std, rgb).to(
                inputs.dtype)

    def distill(self) -> Tuple[bool, Dict[str, Any]]:
        """The views' reverse-KL backward passes.

        Returns:
            tuple: whether every KL was finite, and per view lists of the
            strengths, log-probabilities, entropies and KL values.
        """
        inputs, metas, logits = self._clean
        self._clean = None
        state = policy_state(logits)
        out: Dict[str, Any] = dict(state=state, strengths=[], log_probs=[],
                                   entropies=[], kl=[])
        finite = True
        for _ in range(self.opd_views):
            if self.learner is not None:
                with torch.autocast(inputs.device.type, enabled=False):
                    a, log_p, ent = self.learner.act(state)
                out['log_probs'].append(log_p)
                out['entropies'].append(ent)
            else:
                a = inputs.new_tensor(self.fixed_strength)
            x_aug = self._augment(inputs, a.detach())
            student = self.segmentor.encode_decode(x_aug, metas)
            with torch.no_grad():
                teacher = self.teacher.encode_decode(x_aug, metas)
            kl = reverse_kl(student, teacher, self.opd_temperature)
            finite = self._backward(kl * (self.opd_weight / self.opd_views)) \
                and finite
            out['strengths'].append(a.detach())
            out['kl'].append(kl.detach())
        return finite, out

    def step(self, data_batch: dict) -> List[SegDataSample]:
        self._start_step()
        labels, probs = self.teacher_pseudo_labels(data_batch)
        view = self.plain_view(data_batch)
        with torch.enable_grad():
            losses = self.student_loss(view, labels, probs)
            del probs
            self.last_losses = {k: float(v.detach()) for k, v in losses.items()}
            finite = self._backward(sum(losses.values()))
            views = None
            if finite and self.opd_weight > 0:
                finite, views = self.distill()
                self.last_losses['loss_opd_kl'] = self.opd_weight * float(
                    torch.stack(views['kl']).mean())
            self._clean = None
            self._step_if_finite(finite)
            if views is not None and finite:
                self._policy_step(views)
        return self.scored(view['data_samples'], labels)

    def _policy_step(self, views: Dict[str, Any]) -> None:
        """The policy's REINFORCE step (learned strengths); the telemetry of
        the step (strengths drawn, the policy's mean strengths, reward, KL)."""
        stats: Dict[str, float] = {}
        if self.learner is not None:
            with torch.autocast(views['state'].device.type, enabled=False):
                rewards = [self.learner.reward(k, a) for k, a in
                           zip(views['kl'], views['strengths'])]
                upd = self.learner.update(views['log_probs'],
                                          views['entropies'], rewards)
                if self.telemetry:
                    mean = self.learner.mean_strengths(views['state'])
                    stats.update({f'policy.mean.{n}': float(v)
                                  for n, v in zip(STRENGTH_NAMES, mean)})
            stats.update({
                'policy.reward': float(torch.stack(rewards).mean()),
                'policy.advantage': upd['advantage'],
                'policy.baseline': upd['baseline'],
                'policy.std': float(
                    self.learner.policy.log_std.detach().exp().mean())})
        if not self.telemetry:
            return
        strengths = torch.stack(views['strengths']).float().mean(0)
        stats.update({f'policy.strength.{n}': float(v)
                      for n, v in zip(STRENGTH_NAMES, strengths)})
        stats['opd.kl'] = float(torch.stack(views['kl']).mean())
        stats['policy.state.entropy'] = float(views['state'][0])
        stats['policy.state.confidence'] = float(views['state'][1])
        self._step_stats.update(stats)

    # ------------------------------------------------------------ resumption
    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        if self.learner is not None:
            state['opd_policy'] = self.learner.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.learner is not None:
            self.learner.load_state_dict(state['opd_policy'])
