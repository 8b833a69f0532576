"""Adaptation telemetry: what a CTTA run did to its model, per (round, domain) pass.

Three sources, all generic (no method or adapter is named here):

* **step statistics** a method reports after each step
  (:meth:`~mmseg_moase.methods.base.BaseCTTAMethod.step_stats`: loss terms, the
  anchor gate's plain-view share...), averaged over the pass by
  :class:`StepStatsMeter`;
* **module telemetry**: any module of the student with ``set_telemetry(bool)``
  and ``collect_telemetry() -> dict`` (the MoASE backbone: dead tokens, routing,
  keep ratios per stage and expert) is switched on for the stream and read at
  every pass end (:func:`set_module_telemetry`, :func:`collect_module_telemetry`);
* **parameter drift** ``||theta - theta_0|| / ||theta_0||`` per parameter group of
  the student and the teacher (:class:`ParameterDrift`).
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from ..models.ctta_parts import OTHER_GROUP
from .optimizers.trainable import parameter_groups


def _telemetry_modules(model: nn.Module) -> List[nn.Module]:
    return [m for m in model.modules()
            if callable(getattr(m, 'set_telemetry', None))
            and callable(getattr(m, 'collect_telemetry', None))]


def set_module_telemetry(model: nn.Module, enabled: bool) -> int:
    """Switch the telemetry of every module of ``model`` that has one.

    Returns:
        int: How many modules were switched.
    """
    modules = _telemetry_modules(model)
    for m in modules:
        m.set_telemetry(enabled)
    return len(modules)


def collect_module_telemetry(model: nn.Module) -> Dict[str, float]:
    """Every telemetry module's statistics since its last collection."""
    out: Dict[str, float] = {}
    for m in _telemetry_modules(model):
        out.update(m.collect_telemetry())
    return out


def drift_groups(model: nn.Module) -> Dict[str, List[str]]:
    """Parameter names by drift group: the trainable-groups split
    (:func:`~.optimizers.trainable.parameter_groups`), with ``other`` cut into
    ``backbone`` and ``head`` (everything outside ``backbone.``); empty groups
    left out."""
    out: Dict[str, List[str]] = {'backbone': [], 'head': []}
    for group, names in parameter_groups(model).items():
        for n in names:
            if group == OTHER_GROUP:
                out['backbone' if n.startswith('backbone.') else 'head'].append(n)
            else:
                out.setdefault(group, []).append(n)
    return {g: names for g, names in out.items() if names}


class ParameterDrift:
    """Relative distance of a model's parameters from where they started.

    Keeps a copy of the parameters that can move (``requires_grad`` at
    construction; frozen ones cannot drift) and reports, per group,
    ``||theta - theta_0|| / ||theta_0||`` over the group's tensors together.
    Tensors that start at zero (fresh adapters' up projections and biases) have
    no relative drift: they form the group ``<group>_abs``, reported as the
    norm ``||theta||``.

    Args:
        model (nn.Module): The student, after the method's set-up (so that its
            ``requires_grad`` flags say what adapts).
    """

    def __init__(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        self.groups: Dict[str, List[str]] = {}
        for g, names in drift_groups(model).items():
            for n in names:
                p = params[n]
                if not p.requires_grad:
                    continue
                key = g if bool(p.detach().any()) else f'{g}_abs'
                self.groups.setdefault(key, []).append(n)
        self.start = {n: params[n].detach().clone()
                      for g, names in self.groups.items()
                      if not g.endswith('_abs') for n in names}

    @torch.no_grad()
    def measure(self, model: nn.Module, prefix: str) -> Dict[str, float]:
        """``{f'{prefix}.{group}': drift}`` for the given model (student or
        teacher: same parameter names)."""
        params = dict(model.named_parameters())
        out: Dict[str, float] = {}
        for g, names in self.groups.items():
            if g.endswith('_abs'):
                out[f'{prefix}.{g}'] = float(torch.stack(
                    [params[n].float().pow(2).sum() for n in names]).sum().sqrt())
                continue
            diff = torch.stack([(params[n].float() - self.start[n].float())
                                .pow(2).sum() for n in names]).sum().sqrt()
            base = torch.stack([self.start[n].float().pow(2).sum()
                                for n in names]).sum().sqrt()
            out[f'{prefix}.{g}'] = float(diff / base)
        return out


class StepStatsMeter:
    """Means over a pass of the scalars a method reports per step."""

    def __init__(self) -> None:
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}

    def add(self, stats: Optional[Dict[str, float]]) -> None:
        for k, v in (stats or {}).items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> Dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def state_dict(self) -> Dict[str, Dict]:
        return dict(sums=dict(self.sums), counts=dict(self.counts))

    def load_state_dict(self, state: Dict[str, Dict]) -> None:
        self.sums = dict(state['sums'])
        self.counts = dict(state['counts'])
