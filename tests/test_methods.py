"""Methods: TENT, the EMA hook, CoTTA's views/gate/restore, MoASE end to end."""
import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner, load_checkpoint

from mmseg.registry import DATASETS, MODELS
from mmseg_moase.engine import EMATeacherHook, ema_update, parameter_groups
from mmseg_moase.methods import TENT, CoTTA, MoASE, NormStat
from mmseg_moase.methods.base import split_views
from mmseg_moase.methods.cotta import gated_pseudo_label, stochastic_restore
from mmseg_moase.models.losses import expert_parameter_names

from ctta_helpers import setup_run


def _model_and_batches(tmp_path, method='Source', tta=False, num=3):
    cfg, paths = setup_run(tmp_path, method, num=num)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, paths['ckpt'], map_location='cpu', strict=False,
                    logger='silent')
    ds_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    ds_cfg.update(cfg.test_cfg.domains[0].dataset)
    if tta:
        ds_cfg.pipeline = cfg.test_cfg.tta_pipeline
    dataset = DATASETS.build(ds_cfg)
    batches = [pseudo_collate([dataset[i]]) for i in range(len(dataset))]
    return model, batches


def _preds(samples):
    return [s.pred_sem_seg.data.clone() for s in samples]


def test_tent_scores_before_update_and_changes_only_norm(tmp_path):
    model, batches = _model_and_batches(tmp_path)
    source = copy.deepcopy(model)
    tent = TENT()
    tent.setup(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    ref = NormStat()
    ref.setup(copy.deepcopy(source))
    out1 = _preds(tent.step(copy.deepcopy(batches[0])))
    assert torch.equal(out1[0], _preds(ref.step(copy.deepcopy(batches[0])))[0])

    norm = set(parameter_groups(model)['norm'])
    changed = {n for n, p in model.named_parameters()
               if not torch.equal(p, before[n])}
    assert changed and changed <= norm
    assert any(n.startswith('backbone.') for n in changed)  # MiT LayerNorms
    assert any(n.startswith('decode_head.') for n in changed)  # head BN

    # The second image is scored by the once-updated model, before its update.
    after1 = copy.deepcopy(model)
    ref2 = NormStat()
    ref2.setup(after1)
    out2 = _preds(tent.step(copy.deepcopy(batches[1])))
    assert torch.equal(out2[0], _preds(ref2.step(copy.deepcopy(batches[1])))[0])


def test_tent_self_ce_option_and_bad_loss(tmp_path):
    model, batches = _model_and_batches(tmp_path)
    tent = TENT(loss='self_ce')
    tent.setup(model)
    w0 = model.decode_head.fusion_conv.bn.weight.detach().clone()
    tent.step(batches[0])
    assert not torch.equal(w0, model.decode_head.fusion_conv.bn.weight)
    with pytest.raises(ValueError, match="'entropy', 'self_ce'"):
        TENT(loss='ce')


def test_ema_update_numerics_and_buffer_modes():
    torch.manual_seed(0)
    t, s = nn.BatchNorm1d(4), nn.BatchNorm1d(4)
    for m in (t, s):
        nn.init.normal_(m.weight)
        nn.init.normal_(m.bias)
        m.running_mean.normal_()
    t0 = copy.deepcopy(t)
    ema_update(t, s, 0.9, buffers='keep')
    for name in ('weight', 'bias'):
        expect = 0.9 * getattr(t0, name) + 0.1 * getattr(s, name)
        torch.testing.assert_close(getattr(t, name), expect, rtol=1e-6, atol=1e-6)
    assert torch.equal(t.running_mean, t0.running_mean)
    ema_update(t, s, 0.9, buffers='copy')
    assert torch.equal(t.running_mean, s.running_mean)
    t2 = copy.deepcopy(t0)
    ema_update(t2, s, 0.5, buffers='average')
    torch.testing.assert_close(t2.running_mean,
                               0.5 * t0.running_mean + 0.5 * s.running_mean)
    with pytest.raises(ValueError, match="'keep', 'copy', 'average'"):
        EMATeacherHook(buffers='swap')


def test_ema_hook_binds_its_update_to_a_teacher_method():
    student, teacher = nn.Linear(3, 3), nn.Linear(3, 3)
    t0 = copy.deepcopy(teacher)
    bound = []
    method = SimpleNamespace(bind_teacher_update=bound.append)
    hook = EMATeacherHook(momentum=0.999)
    hook.before_ctta(None, method)
    hook.before_ctta(None, SimpleNamespace())  # a method without a teacher
    assert len(bound) == 1
    bound[0](teacher, student)
    torch.testing.assert_close(
        teacher.weight, 0.999 * t0.weight + 0.001 * student.weight,
        rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match='needs an EMA teacher'):
        CoTTA().ready()


def test_cotta_pipeline_gives_14_views_in_order(tmp_path):
    _, batches = _model_and_batches(tmp_path, tta=True)
    views = split_views(batches[0])
    assert len(views) == 14
    ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    for k, v in enumerate(views):
        meta = v['data_samples'][0].metainfo
        assert meta['flip'] == bool(k % 2)
        h, w = v['inputs'][0].shape[-2:]
        assert (h, w) == (round(32 * ratios[k // 2]), round(64 * ratios[k // 2]))
        # Labels stay at the original size in every view (scored there).
        assert v['data_samples'][0].gt_sem_seg.data.shape[-2:] == (32, 64)
    plain = views[4]['data_samples'][0].metainfo
    assert plain['scale_factor'] == (1.0, 1.0) and not plain['flip']


def test_cotta_gate_on_constructed_probabilities():
    # 3 classes, 1x4 pixels, 2 views; the plain view is view 1.
    def probs(*cols):
        return torch.tensor(cols, dtype=torch.float).T.reshape(3, 1, 4)
    v0 = probs([.1, .1, .8], [.1, .1, .8], [.1, .1, .8], [.1, .1, .8])
    v1 = probs([.6, .2, .2], [.6, .2, .2], [.2, .6, .2], [.2, .6, .2])
    anchor = probs([.9, .05, .05], [.5, .3, .2], [.05, .9, .05], [.69, .3, .01])
    # Mean: class 2 everywhere except pixel 0/1 (.35,.15,.5) -> 2 as well.
    label = gated_pseudo_label(v1, (v0 + v1) / 2, anchor, 0.69)
    # Confident anchor (pixels 0 and 2) -> plain view argmax; 0.69 is not > 0.69.
    assert label.flatten().tolist() == [0, 2, 1, 2]


def test_stochastic_restore_probabilities():
    src = [torch.zeros(1000), torch.zeros(10, 10)]
    for prob, expect_restored in ((1.0, 1.0), (0.0, 0.0)):
        params = [torch.ones(1000), torch.ones(10, 10)]
        stochastic_restore(params, src, prob)
        frac = sum(float((p == 0).sum()) for p in params) / 1100
        assert frac == expect_restored
    torch.manual_seed(0)
    params = [torch.ones(100000)]
    stochastic_restore(params, [torch.zeros(100000)], 0.01)
    assert 0.008 < float((params[0] == 0).float().mean()) < 0.012


def test_cotta_step_scores_the_pseudo_label_and_adapts(tmp_path):
    model, batches = _model_and_batches(tmp_path, 'CoTTA', tta=True)
    cotta = CoTTA(restore_prob=0.0)
    cotta.setup(model)
    EMATeacherHook(momentum=0.9).before_ctta(None, cotta)
    cotta.ready()
    w = model.decode_head.conv_seg.weight.detach().clone()
    labels, _ = cotta.teacher_pseudo_labels(copy.deepcopy(batches[0]))
    out = cotta.step(batches[0])
    assert torch.equal(out[0].pred_sem_seg.data[0], labels[0])
    assert out[0].pred_sem_seg.data.shape[-2:] == (32, 64)
    assert not torch.equal(w, model.decode_head.conv_seg.weight)
    assert torch.equal(w, cotta.teacher.decode_head.conv_seg.weight)
    # After the step, in this order: the teacher's EMA of the adapted student,
    # then the restore (probability 1: every trainable tensor back to the
    # source), so the teacher has moved and the student has not.
    adapted = model.decode_head.conv_seg.weight.detach().clone()
    cotta.restore_prob = 1.0
    cotta.after_step()
    assert torch.equal(w, model.decode_head.conv_seg.weight)
    torch.testing.assert_close(cotta.teacher.decode_head.conv_seg.weight,
                               0.9 * w + 0.1 * adapted, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match='multi-view'):
        cotta.step(_model_and_batches(tmp_path)[1][0])


def _run(cfg):
    runner = Runner.from_cfg(cfg)
    runner.test()
    return runner


def test_moase_stream_end_to_end_only_adapters_change(tmp_path):
    cfg, paths = setup_run(tmp_path, 'MoASE', domains=('fog', ), num=2)
    cfg.test_cfg.method.update(trainable='adapters', restore_prob=0.0)
    runner = _run(cfg)
    method = runner.test_loop.method
    assert method.skipped_updates == 0
    assert all(torch.isfinite(torch.tensor(v)) for v in method.last_losses.values())
    assert set(method.last_losses) == {'loss_ce', 'loss_hp'}
    source = torch.load(paths['ckpt'], weights_only=True)['state_dict']
    student = method.segmentor.state_dict()
    changed = {k for k in source if not torch.equal(source[k], student[k])}
    assert changed == set(), f'non-adapter weights changed: {sorted(changed)[:3]}'
    ups = [k for k in student if k.endswith('adapter.experts.up_weight')]
    assert ups and all(student[k].abs().sum() > 0 for k in ups)
    # The teacher moved toward the student but not all the way.
    teacher = method.teacher.state_dict()
    k = ups[-1]
    assert 0 < teacher[k].abs().sum() < student[k].abs().sum()


def test_moase_hp_pulls_experts_toward_teacher(tmp_path):
    dist = {}
    for mu in (0.0, 1e4):
        cfg, paths = setup_run(tmp_path, 'MoASE', rounds=2, num=3,
                               work=f'w{mu}')
        cfg.test_cfg.method.update(teacher='single', loss='soft_ce', hp_mu=mu,
                                   restore_prob=0.0)
        method = _run(cfg).test_loop.method
        s = dict(method.segmentor.named_parameters())
        t = dict(method.teacher.named_parameters())
        names = expert_parameter_names(method.segmentor)
        dist[mu] = sum(float((s[n] - t[n]).pow(2).sum()) for n in names)
    assert dist[1e4] < 0.5 * dist[0.0]


def test_moase_refuses_model_without_adapters(tmp_path):
    cfg, paths = setup_run(tmp_path, 'MoASE', moase=False)
    with pytest.raises(ValueError, match='MixVisionTransformerMoASE'):
        _run(cfg)


@pytest.mark.parametrize('kw, option', [(dict(teacher='ema'), 'teacher'),
                                        (dict(loss='kl'), 'loss'),
                                        (dict(hp_norm='l1'), 'hp_norm'),
                                        (dict(trainable='norm'), 'trainable')])
def test_moase_bad_options(kw, option):
    with pytest.raises(ValueError, match=option):
        MoASE(**kw)


def test_nonfinite_loss_skips_update_and_keeps_student(tmp_path):
    model, batches = _model_and_batches(tmp_path, 'CoTTA', tta=True)
    cotta = CoTTA(restore_prob=0.0)
    cotta.setup(model)
    before = copy.deepcopy(model.state_dict())
    cotta.student_loss = lambda *a: dict(loss_ce=torch.tensor(float('nan'),
                                                               requires_grad=True))
    cotta.step(batches[0])
    assert cotta.skipped_updates == 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_nonfinite_gradient_with_finite_loss_is_skipped(tmp_path):
    model, batches = _model_and_batches(tmp_path, 'CoTTA', tta=True)
    cotta = CoTTA(restore_prob=0.0)
    cotta.setup(model)
    before = copy.deepcopy(model.state_dict())
    w = model.decode_head.conv_seg.bias
    # sqrt(w - w) is 0 (a finite loss) but its gradient is infinite.
    cotta.student_loss = lambda *a: dict(loss_ce=torch.sqrt(w - w.detach()).sum())
    cotta.step(batches[0])
    assert cotta.skipped_updates == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize('given, expected', [
    # Only the rate: the rest from the class's default Adam.
    (dict(optimizer=dict(lr=2e-4)),
     dict(type='Adam', lr=2e-4, betas=(0.9, 0.999))),
    # Another optimiser: none of Adam's settings (SGD takes no betas).
    (dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
     dict(type='SGD', lr=0.05, momentum=0.9)),
    (dict(optimizer=dict(_delete_=True, type='SGD', lr=0.05, momentum=0.9)),
     dict(type='SGD', lr=0.05, momentum=0.9)),
])
def test_method_optimiser_resolves_once_and_stays(given, expected):
    """A config's partial optim_wrapper over the class's default optimiser;
    resolving the result again (the loop after prepare_ctta_config) changes
    nothing: an SGD override once received Adam's betas that way."""
    from mmseg_moase.methods.builder import resolve_method_cfg
    from mmseg_moase.methods.cotta import COTTA_LR, CoTTA
    default = CoTTA.default_optim_wrapper['optimizer']
    assert default['type'] == 'Adam' and default['lr'] == COTTA_LR
    once = resolve_method_cfg(dict(type='CoTTA', optim_wrapper=given))
    opt = dict(once['optim_wrapper']['optimizer'])
    opt['betas'] = tuple(opt['betas']) if 'betas' in opt else None
    expected = dict(expected, betas=expected.get('betas'))
    for k, v in expected.items():
        assert opt.get(k) == v, (k, opt)
    assert set(opt) - {'betas'} <= set(expected)
    assert resolve_method_cfg(once) == once
    assert resolve_method_cfg(dict(type='CoTTA')) == resolve_method_cfg(
        resolve_method_cfg(dict(type='CoTTA')))
