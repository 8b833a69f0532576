"""HP loss and the test-time parameter selection / optimiser groups."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mmseg.registry import MODELS
from mmseg_moase.engine import parameter_groups, set_trainable
from mmseg_moase.models.losses import expert_parameter_names, hp_loss

from conftest import TINY_MIT, config_path, randomize_adapters


def _tiny_segformer(**moase_cfg):
    cfg = Config.fromfile(
        config_path('_base_', 'models', 'segformer_mit-b0_moase.py'))
    cfg.model.backbone.update(
        {k: v for k, v in TINY_MIT.items() if k != 'drop_path_rate'})
    cfg.model.backbone.moase_cfg.update(moase_cfg)
    cfg.model.decode_head.update(in_channels=[8, 16, 40, 64], channels=16,
                                 norm_cfg=dict(type='BN', requires_grad=True))
    model = MODELS.build(cfg.model)
    model.init_weights()
    randomize_adapters(model)
    return model


def test_hp_loss_by_hand_both_forms_and_zero_for_equal_models():
    student = _tiny_segformer()
    teacher = copy.deepcopy(student)
    names = expert_parameter_names(student)
    assert names and all('.adapter.experts.' in n for n in names)
    assert hp_loss(student, teacher).item() == 0.0
    assert hp_loss(student, teacher, norm='l2').item() == 0.0

    t_params = dict(teacher.named_parameters())
    with torch.no_grad():
        for n in names:
            t_params[n].add_(torch.randn_like(t_params[n]) * 0.01)
        # A router and a backbone weight differ too: HP must ignore them.
        t_params['backbone.layers.0.1.0.adapter.dag.weight'].add_(1.0)
        t_params['backbone.layers.0.0.projection.weight'].add_(1.0)
    s_params = dict(student.named_parameters())
    sq = sum(float(((s_params[n] - t_params[n])**2).sum()) for n in names)
    l2 = sum(float(((s_params[n] - t_params[n])**2).sum())**0.5 for n in names)
    assert hp_loss(student, teacher, mu=2.0).item() == pytest.approx(sq, rel=1e-5)
    assert hp_loss(student, teacher, mu=1.0, norm='l2').item() == pytest.approx(
        0.5 * l2, rel=1e-5)
    loss = hp_loss(student, dict(teacher.named_parameters()), mu=0.5)
    assert loss.item() == pytest.approx(0.25 * sq, rel=1e-5)
    # The gradient pulls the student toward the teacher.
    loss.backward()
    n = names[0]
    expect = 0.5 * (s_params[n] - t_params[n]).detach()
    torch.testing.assert_close(s_params[n].grad, expect)
    with pytest.raises(ValueError, match='norm'):
        hp_loss(student, teacher, norm='l1')


@pytest.mark.parametrize('mode', ['all', 'adapters', 'adapters+norm', 'norm'])
@pytest.mark.parametrize('asg_grad', ['none', 'ste'])
def test_backward_reaches_exactly_the_selected_parameters(mode, asg_grad):
    model = _tiny_segformer(asg_grad=asg_grad).train()
    selected = set(sum(set_trainable(model, mode).values(), []))
    assert selected
    x = torch.randn(2, 3, 64, 64)
    logits = model._forward(x)
    target = torch.randint(0, 19, (2, 16, 16))
    torch.nn.functional.cross_entropy(logits, target).backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None}
    assert reached == selected
    groups = parameter_groups(model)
    if mode in ('adapters', 'adapters+norm'):
        assert set(groups['experts']) <= selected
        assert not set(groups['other']) & selected
    if mode != 'all':
        assert not any(n.startswith('decode_head.conv_seg') for n in selected)
    asg = 'backbone.layers.0.1.0.adapter.asg.weight'
    assert (asg in selected) == (asg_grad == 'ste' and mode != 'norm')


def test_unknown_trainable_mode():
    with pytest.raises(ValueError, match=r"trainable.*'adapters\+norm'"):
        set_trainable(_tiny_segformer(), 'backbone')


def test_optimiser_constructor_groups_and_lrs():
    model = _tiny_segformer()
    wrapper = build_optim_wrapper(
        model,
        dict(constructor='TrainableGroupsOptimWrapperConstructor',
             optimizer=dict(type='Adam', lr=7.5e-6, betas=(0.9, 0.99)),
             paramwise_cfg=dict(trainable='adapters+norm',
                                group_lr=dict(experts=2e-4, routers=1e-4))))
    by_id = {id(p): n for n, p in model.named_parameters()}
    groups = parameter_groups(model)
    lr_of = {by_id[id(p)]: g['lr'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    assert set(lr_of) == set(groups['experts'] + groups['routers'] +
                             groups['norm'])
    assert {lr_of[n] for n in groups['experts']} == {2e-4}
    assert {lr_of[n] for n in groups['routers']} == {1e-4}
    assert {lr_of[n] for n in groups['norm']} == {7.5e-6}
    assert len(wrapper.optimizer.param_groups) == 3  # merged by settings
    with pytest.raises(ValueError, match='group_lr'):
        build_optim_wrapper(
            model,
            dict(constructor='TrainableGroupsOptimWrapperConstructor',
                 optimizer=dict(type='Adam', lr=1e-4),
                 paramwise_cfg=dict(group_lr=dict(adapter=1e-3))))


def test_custom_keys_still_apply():
    model = _tiny_segformer()
    wrapper = build_optim_wrapper(
        model,
        dict(constructor='TrainableGroupsOptimWrapperConstructor',
             optimizer=dict(type='Adam', lr=1e-4),
             paramwise_cfg=dict(trainable='all',
                                custom_keys={'decode_head': dict(lr_mult=10.)})))
    lrs = {g['lr'] for g in wrapper.optimizer.param_groups}
    assert lrs == {1e-4, 1e-3}


def test_weighted_cross_entropy_matches_torch_and_ignores_255():
    from mmseg.registry import MODELS as M
    w = torch.rand(19) + 0.5
    loss = M.build(dict(type='WeightedCrossEntropyLoss', class_weight=w.tolist()))
    logits = torch.randn(2, 19, 4, 5)
    label = torch.randint(0, 19, (2, 4, 5))
    label[0, 0, :3] = 255
    expect = torch.nn.functional.cross_entropy(logits, label, weight=w,
                                               ignore_index=255)
    torch.testing.assert_close(loss(logits, label, ignore_index=255), expect)
    # By hand: sum of w[y] * nll over valid pixels / sum of w[y].
    valid = label != 255
    logp = logits.log_softmax(1)
    y = label.clamp(max=18)
    nll = -logp.gather(1, y[:, None])[:, 0]
    hand = (w[y] * nll)[valid].sum() / w[y][valid].sum()
    torch.testing.assert_close(loss(logits, label), hand)
    assert loss.loss_name == 'loss_ce'
