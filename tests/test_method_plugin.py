"""A method written outside the package plugs into the engine by declaration.

Everything here is defined in this file: a toy adapter (a per-channel scale
after each MiT stage), a backbone carrying it, and a teacher-student method
that declares a new parameter group ``toyadapter`` (its modules, its
learning-rate option, its EMA momentum) and its telemetry keys. It runs
through the real Runner and CTTA loop with no change to ``mmseg_moase.engine``:
the optimiser gives the group its own rate, the EMA hook its own momentum
(checked against the rule computed by hand), the stochastic restore resets
elements to their source values, the telemetry carries the method's keys and
the group's drift, and a run interrupted at a step boundary and resumed equals
an uninterrupted one.
"""
import os
import os.path as osp
import signal
from typing import Dict, List

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmseg.models.backbones import MixVisionTransformer
from mmseg.registry import HOOKS, MODELS
from mmseg_moase.apis import prepare_ctta_config
from mmseg_moase.engine import parameter_groups
from mmseg_moase.methods.base import decode_ce_loss
from mmseg_moase.methods.cotta import stochastic_restore
from mmseg_moase.methods.mean_teacher import MeanTeacherMethod
from mmseg_moase.models.ctta_parts import ParamGroup
from mmseg_moase.registry import METHODS

from ctta_helpers import (PIPELINE, TINY_MODEL_TEMPLATE, make_domains,
                          resume_table, save_source_checkpoint)
from helpers import assert_plot

GROUP_MOMENTUM = 0.9  # the toy adapters' EMA momentum
TEACHER_MOMENTUM = 0.99  # every other parameter's
RECORDED_STEPS = 3


class ToyAdapter(nn.Module):
    """``x * (1 + scale)`` per channel; a fresh adapter is the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.scale[None, :, None, None])


@MODELS.register_module(force=True)
class ToyAdapterMiT(MixVisionTransformer):
    """MiT with a :class:`ToyAdapter` on each stage's output (``adapter.<i>``:
    the source checkpoint may lack those keys)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.adapter = nn.ModuleList(
            ToyAdapter(self.embed_dims * h) for h in self.num_heads)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [a(o) for a, o in zip(self.adapter, super().forward(x))]


@METHODS.register_module(force=True)
class ToyTeacher(MeanTeacherMethod):
    """A teacher labels the plain view, the student takes an Adam step of
    cross-entropy on it, then the EMA update and a stochastic restore of
    every trainable element. Records the first steps' weights around
    :meth:`after_step` (the teacher update and the restore)."""

    param_groups = (ParamGroup('toyadapter', modules=(ToyAdapter, ),
                               lr_option='adapter_lr',
                               momentum=GROUP_MOMENTUM), )
    ema_momentum = TEACHER_MOMENTUM
    telemetry_keys = ('toy.', )
    telemetry_panels = (dict(pattern=r'^toy\.(?P<series>agreement)$',
                             ylabel='share', ylim=(0, 1)), )

    def __init__(self, lr: float = 1e-4, adapter_lr: float = 1e-2,
                 restore_prob: float = 0.3, **kwargs) -> None:
        optim_wrapper = dict(
            constructor='TrainableGroupsOptimWrapperConstructor',
            optimizer=dict(type='Adam', lr=lr, betas=(0.9, 0.999)),
            paramwise_cfg=dict(trainable='all',
                               group_lr=self.group_lr(adapter_lr=adapter_lr)))
        super().__init__(optim_wrapper=optim_wrapper, **kwargs)
        self.restore_prob = restore_prob
        self.records: List[Dict[str, Dict[str, torch.Tensor]]] = []
        self._params: List[torch.Tensor] = []
        self._sources: List[torch.Tensor] = []

    def setup(self, model: nn.Module) -> None:
        model.eval()
        super().setup(model)  # the optimiser, then the teacher
        self._params = [p for p in self.segmentor.parameters()
                        if p.requires_grad]
        self._sources = [p.detach().clone() for p in self._params]

    def step(self, data_batch: dict):
        self._start_step()
        view = self.plain_view(data_batch)
        with torch.no_grad():
            labels = [p.pred_sem_seg.data[0]
                      for p in self.predict(self.teacher, view)]
        inputs, _ = self.preprocess(self.model, view)
        preds: List[torch.Tensor] = []
        with torch.enable_grad():
            loss = decode_ce_loss(self.segmentor, inputs, labels,
                                  preds_out=preds)
            self.last_losses = dict(loss_ce=float(loss.detach()))
            self.update(loss)
        if self.telemetry:
            self._student_preds = preds
            self._step_stats['toy.agreement'] = float(torch.stack(
                [(p == lb).float().mean() for p, lb in zip(preds, labels)]
            ).mean())
        return self.scored(view['data_samples'], labels)

    def restore(self) -> None:
        stochastic_restore(self._params, self._sources, self.restore_prob)

    def after_step(self) -> None:
        if len(self.records) >= RECORDED_STEPS:
            return super().after_step()

        def weights(model):
            return {n: p.detach().clone() for n, p in model.named_parameters()}

        before = dict(teacher=weights(self.teacher),
                      student=weights(self.segmentor))
        super().after_step()
        self.records.append(dict(
            teacher0=before['teacher'], student0=before['student'],
            teacher1=weights(self.teacher), student1=weights(self.segmentor),
            source={n: s for (n, p), s in zip(
                [(n, p) for n, p in self.segmentor.named_parameters()
                 if p.requires_grad], self._sources)}))


@HOOKS.register_module(force=True)
class SigtermAfterSteps(Hook):
    """Sends this process SIGTERM after the ``steps``-th step (a step
    boundary the run itself reports), as a scheduler's preemption would."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.seen = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        self.seen += 1
        if self.seen == self.steps:
            os.kill(os.getpid(), signal.SIGTERM)


def _config(tmp_path) -> tuple:
    data = str(tmp_path / 'data')
    make_domains(data, ('fog', 'night'), num=3)
    doms = ',\n'.join(
        f"        dict(name='{d}', dataset=dict(data_root='{data}', "
        f"data_prefix=dict(img_path='leftImg8bit/{d}', "
        f"seg_map_path='gtFine/{d}')))" for d in ('fog', 'night'))
    text = f'''
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py']
{TINY_MODEL_TEMPLATE.format(backbone_extra=", type='ToyAdapterMiT'")}
{PIPELINE}
ctta_stream = dict(
    rounds=2,
    domains=[
{doms}],
    dataloader=dict(batch_size=1, num_workers=0, persistent_workers=False,
                    dataset=dict(type='CityscapesDataset', pipeline=pipeline)))
ctta_method = dict(type='ToyTeacher', lr=1e-4, adapter_lr=1e-2,
                   restore_prob=0.3)
custom_hooks = [dict(type='EMATeacherHook')]
ctta_cfg = dict(save_interval=1, progress_interval=0.0)
log_level = 'WARNING'
'''
    config = str(tmp_path / 'toy.py')
    with open(config, 'w') as f:
        f.write(text)
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    return config, ckpt


def _run(config: str, ckpt: str, work: str, **kw) -> Runner:
    cfg = prepare_ctta_config(config, ckpt, work_dir=work, seed=3, **kw)
    runner = Runner.from_cfg(cfg)
    runner.test()
    return runner


def _check_optimiser(method: ToyTeacher) -> None:
    seg = method.segmentor
    adapters = set(parameter_groups(seg)['toyadapter'])
    assert adapters == {n for n, _ in seg.named_parameters()
                        if n.startswith('backbone.adapter.')}
    name_of = {id(p): n for n, p in seg.named_parameters()}
    lr_of = {name_of[id(p)]: g['lr']
             for g in method.optim_wrapper.optimizer.param_groups
             for p in g['params']}
    assert set(lr_of) == set(name_of.values())  # trainable='all'
    assert {lr_of[n] for n in adapters} == {1e-2}
    assert {lr for n, lr in lr_of.items() if n not in adapters} == {1e-4}


def _check_ema_and_restore(method: ToyTeacher) -> None:
    adapters = set(parameter_groups(method.segmentor)['toyadapter'])
    assert len(method.records) == RECORDED_STEPS
    restored_total = 0
    for rec in method.records:
        moved = 0
        for n, t0 in rec['teacher0'].items():
            s0, t1 = rec['student0'][n], rec['teacher1'][n]
            # theta_t <- m * theta_t + (1 - m) * theta_s, in double precision.
            m = 0.9 if n in adapters else 0.99
            expect = m * t0.double() + (1.0 - m) * s0.double()
            torch.testing.assert_close(t1.double(), expect, rtol=0, atol=2e-7)
            if n in adapters:
                moved += int((s0 != t0).sum())
        assert moved > 0, 'the adapters did not move: the check is empty'
        # Restore: every element is the updated student's or the source's.
        for n, s0 in rec['student0'].items():
            s1, src = rec['student1'][n], rec['source'][n]
            changed = s0 != src
            restored = (s1 == src) & changed
            assert bool(((s1 == s0) | restored).all()), n
            restored_total += int(restored.sum())
    assert restored_total > 0


def test_toy_method_with_its_own_group_runs_through_the_runner(tmp_path):
    config, ckpt = _config(tmp_path)
    work = str(tmp_path / 'full')
    runner = _run(config, ckpt, work)
    method = runner.test_loop.method
    assert isinstance(method, ToyTeacher) and method.telemetry
    assert method.skipped_updates == 0
    _check_optimiser(method)
    _check_ema_and_restore(method)

    res = runner.test_loop.results.records
    assert len(res) == 4
    for rec in res:
        tel = rec['telemetry']
        assert 'toy.agreement' in tel and 'loss.loss_ce' in tel
        # The declared group's drift, of both models (a fresh adapter starts
        # at zero: its norm is reported).
        assert tel['drift.student.toyadapter_abs'] > 0
        assert tel['drift.teacher.toyadapter_abs'] > 0
        assert 'student_mIoU' in rec
    assert_plot(osp.join(work, 'ctta_telemetry.png'))

    # Interrupted at a step boundary of the second pass, then resumed.
    part = str(tmp_path / 'part')
    with pytest.raises(SystemExit) as e:
        _run(config, ckpt, part, cfg_options={
            'custom_hooks': [dict(type='EMATeacherHook'),
                             dict(type='SigtermAfterSteps', steps=4)]})
    assert e.value.code == 128 + signal.SIGTERM
    state = torch.load(osp.join(part, 'ctta_state.pth'), weights_only=True)
    assert (state['pass_idx'], state['image_idx']) == (1, 1)
    _run(config, ckpt, part, resume=True)
    keys = ('loss.', 'drift.', 'toy.')
    assert resume_table(part, keys) == resume_table(work, keys)
    a = torch.load(osp.join(work, 'ctta_state.pth'), weights_only=True)
    b = torch.load(osp.join(part, 'ctta_state.pth'), weights_only=True)
    for key in ('model', 'teacher'):
        for k, v in a['method'][key].items():
            assert torch.equal(v, b['method'][key][k]), (key, k)
