"""MoASE++ (reverse KL, the augmentation policy, its augmentation, the step,
resume, configs) and MoASE's ``released`` expert selection."""
import copy
import math
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch.distributions import (AffineTransform, Independent, Normal,
                                 TanhTransform, TransformedDistribution)

from mmseg.registry import MODELS
from mmseg_moase.methods import MoASEPP
from mmseg_moase.methods.moase_pp import policy_state, reverse_kl
from mmseg_moase.methods.opd_augment import (AUG_MAXIMA, _colour, _geometry,
                                             augment_inputs, augment_ranges,
                                             sample_params)
from mmseg_moase.methods.opd_policy import (PolicyLearner, squash,
                                            squashed_log_prob)
from mmseg_moase.models.adapters import sdd_mask

from conftest import ROOT
from ctta_helpers import read_results, save_source_checkpoint, setup_run, \
    make_domains, write_config
from step_signal_hook import hook_env, write_signal_config

TOOL = osp.join(ROOT, 'tools', 'test_ctta.py')
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


# ----------------------------------------------------------------- reverse KL
def test_reverse_kl_by_hand_and_zero_for_equal_inputs():
    s = torch.tensor([1.0, -0.5, 0.3, 2.0]).view(1, 2, 1, 2)  # B, C, H, W
    t = torch.tensor([0.0, 1.5, -1.0, 0.5]).view(1, 2, 1, 2)
    T = 2.0
    expect = 0.0
    for w in range(2):  # per pixel, KL(p_s || p_t) of the tempered softmaxes
        zs = [math.exp(s[0, c, 0, w].item() / T) for c in range(2)]
        zt = [math.exp(t[0, c, 0, w].item() / T) for c in range(2)]
        ps = [v / sum(zs) for v in zs]
        pt = [v / sum(zt) for v in zt]
        expect += sum(a * math.log(a / b) for a, b in zip(ps, pt)) / 2
    assert reverse_kl(s, t, T).item() == pytest.approx(expect * T * T,
                                                       rel=1e-5)
    # Student first: the other direction is another number.
    assert abs(reverse_kl(t, s, T).item() - expect * T * T) > 1e-3
    assert reverse_kl(s, s.clone(), T).item() == pytest.approx(0, abs=1e-7)
    # The teacher gets no gradient, the student does.
    s.requires_grad_(True)
    t.requires_grad_(True)
    reverse_kl(s, t, T).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


def test_policy_state_is_mean_entropy_and_confidence():
    logits = torch.zeros(1, 4, 2, 2)  # uniform: entropy log 4, max prob 1/4
    logits[0, 0, 0, 0] = 100.0  # one certain pixel: entropy 0, max prob 1
    ent, conf = policy_state(logits).tolist()
    assert ent == pytest.approx(3 * math.log(4) / 4, rel=1e-5)
    assert conf == pytest.approx((3 * 0.25 + 1) / 4, rel=1e-5)


# -------------------------------------------------------------------- policy
def test_log_prob_matches_torch_tanh_transform_and_numeric_density():
    torch.manual_seed(0)
    mu = torch.randn(5, 3, dtype=torch.float64)
    std = torch.rand(5, 3, dtype=torch.float64) + 0.3
    z = mu + std * torch.randn(5, 3, dtype=torch.float64) * 2
    ours = squashed_log_prob(Normal(mu, std), z)
    ref_dist = Independent(TransformedDistribution(
        Normal(mu, std), [TanhTransform(), AffineTransform(0.5, 0.5)]), 1)
    torch.testing.assert_close(ours, ref_dist.log_prob(squash(z)))
    # And against the change of variables with the derivative by autograd.
    zz = z.clone().requires_grad_(True)
    (da_dz, ) = torch.autograd.grad(squash(zz).sum(), zz)
    numeric = (Normal(mu, std).log_prob(z) - da_dz.log()).sum(-1)
    torch.testing.assert_close(ours, numeric)


def test_learner_act_returns_the_log_prob_of_its_sample():
    torch.manual_seed(1)
    learner = PolicyLearner()
    state = torch.tensor([1.2, 0.6])
    a, log_p, ent = learner.act(state)
    assert a.shape == (3, ) and not a.requires_grad
    assert ((a > 0) & (a < 1)).all()
    dist = learner.policy(state)
    ref = Independent(TransformedDistribution(
        Normal(dist.loc.detach(), dist.scale.detach()),
        [TanhTransform(), AffineTransform(0.5, 0.5)]), 1)
    assert log_p.item() == pytest.approx(ref.log_prob(a).item(), abs=1e-4)
    # Entropy of the Gaussian with the initial std 0.5, three strengths.
    assert ent.item() == pytest.approx(
        3 * (0.5 * math.log(2 * math.pi * math.e) + math.log(0.5)), rel=1e-5)
    assert log_p.requires_grad and ent.requires_grad


def test_one_reinforce_step_moves_the_mean_toward_the_better_action():
    """Toy problem: the KL is the squared distance of the strengths to a
    target; the view with the higher reward pulls the policy's mean."""
    torch.manual_seed(2)
    learner = PolicyLearner(lr=1e-3)
    state = torch.tensor([0.8, 0.7])
    target = torch.tensor([0.9, 0.1, 0.8])
    views = [learner.act(state) for _ in range(2)]
    kls = [(a - target).pow(2).sum() for a, _, _ in views]
    rewards = [learner.reward(k, a) for k, (a, _, _) in zip(kls, views)]
    hi, lo = (0, 1) if rewards[0] > rewards[1] else (1, 0)
    z = [torch.atanh(2 * a - 1) for a, _, _ in views]
    before = learner.policy(state).loc.detach().clone()
    out = learner.update([v[1] for v in views], [v[2] for v in views], rewards)
    after = learner.policy(state).loc.detach()
    # The mean moved along z_hi - z_lo (toward the better action).
    assert float((after - before) @ (z[hi] - z[lo])) > 0
    # The baseline moved from 0 toward the mean reward (momentum 0.9).
    mean_r = float(torch.stack(rewards).mean())
    assert out['baseline'] == pytest.approx(0.1 * mean_r, rel=1e-5)
    assert out['advantage'] == pytest.approx(mean_r, rel=1e-5)


def test_reinforce_learns_the_strengths_of_a_toy_reward():
    """Many steps on the toy problem: the mean strengths go to the target
    (start near 0.5 each)."""
    torch.manual_seed(3)
    learner = PolicyLearner(lr=3e-3, strength_penalty=0.0)
    state = torch.tensor([0.5, 0.5])
    target = torch.tensor([0.9, 0.1, 0.5])
    start = learner.mean_strengths(state)
    assert (start - 0.5).abs().max() < 0.2
    for _ in range(300):
        a, log_p, ent = learner.act(state)
        learner.update([log_p], [ent],
                       [learner.reward((a - target).pow(2).sum(), a)])
    end = learner.mean_strengths(state)
    assert end[0] > 0.8 and end[1] < 0.2 and abs(end[2] - 0.5) < 0.2


# -------------------------------------------------------------- augmentation
def _image(h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(2, 3, h, w, generator=g) * 200 + 20
    return (pixels - MEAN) / STD


def test_strength_zero_is_the_identity():
    x = _image()
    out = augment_inputs(x, torch.zeros(3), MEAN, STD)
    torch.testing.assert_close(out, x, atol=2e-5, rtol=0)
    out = augment_inputs(x, torch.zeros(3), MEAN, STD, rgb=False)
    torch.testing.assert_close(out, x, atol=2e-5, rtol=0)


def test_strength_one_reaches_the_maxima():
    ranges = augment_ranges(torch.ones(1, 3))
    assert {k: float(v) for k, v in ranges.items()} == pytest.approx(
        dict(rotation_deg=15.0, translation=1 / 16, scale=0.1, flip_prob=1.0,
             brightness=0.4, contrast=0.3, saturation=0.5, hue=0.06,
             blur_sigma=0.5, noise_std=0.02))
    assert set(ranges) == set(AUG_MAXIMA)
    torch.manual_seed(4)
    p = sample_params(torch.ones(4000, 3))
    for key, bound, center in (('angle', 15.0, 0.0), ('tx', 1 / 16, 0.0),
                               ('ty', 1 / 16, 0.0), ('scale', 0.1, 1.0),
                               ('brightness', 0.2, 1.0),
                               ('contrast', 0.15, 1.0),
                               ('saturation', 0.25, 1.0), ('hue', 0.06, 0.0)):
        dev = (p[key] - center).abs()
        assert dev.max() <= bound + 1e-6 and dev.max() > 0.99 * bound, key
    assert p['flip'].all()
    assert (p['blur_sigma'] == 0.5).all() and (p['noise_std'] == 0.02).all()
    # Half the strength, half the range; strength 0: nothing moves.
    half = sample_params(torch.full((4000, 3), 0.5))
    assert half['angle'].abs().max() <= 7.5 + 1e-6
    assert 0.4 < half['flip'].float().mean() < 0.6
    zero = sample_params(torch.zeros(10, 3))
    assert (zero['angle'] == 0).all() and not zero['flip'].any()


def test_geometry_translation_rotation_and_flip_by_hand():
    x = torch.rand(1, 3, 16, 16)
    none = dict(angle=torch.zeros(1), tx=torch.zeros(1), ty=torch.zeros(1),
                scale=torch.ones(1), flip=torch.zeros(1, dtype=torch.bool))
    # tx = 1/16 of the width: the content moves right by one pixel.
    out = _geometry(x, dict(none, tx=torch.tensor([1 / 16])))
    torch.testing.assert_close(out[..., 1:], x[..., :-1], atol=1e-5, rtol=0)
    # 90 degrees on a square image: a quarter turn of the pixel grid.
    out = _geometry(x, dict(none, angle=torch.tensor([90.0])))
    turned = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min((out - t).abs().max() for t in turned) < 1e-5
    out = _geometry(x, dict(none, flip=torch.ones(1, dtype=torch.bool)))
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=0)


def test_colour_factors_and_noise_std():
    x = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    one = torch.ones(1)
    base = dict(brightness=one, contrast=one, saturation=one,
                hue=torch.zeros(1), blur_sigma=torch.zeros(1))
    torch.testing.assert_close(_colour(x, base), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(_colour(x, dict(base, brightness=one * 1.2)),
                               (x * 1.2).clamp(0, 1), atol=1e-5, rtol=0)
    gray = _colour(x, dict(base, saturation=torch.zeros(1)))
    assert (gray.max(1).values - gray.min(1).values).max() < 1e-5
    # Noise only: Gaussian of std 0.02 on [0, 1] images.
    torch.manual_seed(5)
    flat = (torch.full((1, 3, 64, 64), 128.0) - MEAN) / STD
    out = augment_inputs(flat, torch.tensor([0.0, 0.0, 1.0]), MEAN, STD)
    resid = (out - flat) * STD / 255
    assert float(resid.std()) == pytest.approx(0.02, rel=0.05)


# ---------------------------------------------------------- released ranking
def _smallest_reference(z, k, scope):
    """Keep the k smallest entries per group (Python sorting), as the public
    code's experts all do."""
    rows = z.reshape(-1, z.shape[-1]) if scope == 'token' else \
        z.reshape(z.shape[0], -1)
    mask = torch.zeros_like(rows)
    for r, row in enumerate(rows.tolist()):
        for _, c in sorted((v, c) for c, v in enumerate(row))[:k]:
            mask[r, c] = 1
    return mask.reshape(z.shape)


def _kept(z, mask, scope):
    """Per group, the sorted values a mask keeps."""
    def groups(t):
        return t.reshape(-1, t.shape[-1]) if scope == 'token' else \
            t.reshape(t.shape[0], -1)
    return [sorted(g[m.bool()].tolist())
            for g, m in zip(groups(z), groups(mask))]


@pytest.mark.parametrize('scope', ['token', 'sample'])
def test_released_selection_keeps_the_smallest_for_every_expert(scope):
    z = torch.relu(torch.randn(2, 5, 12))  # post-ReLU: many exact zeros
    z = z + torch.arange(z.numel()).view_as(z) * 1e-6  # no ties
    z[z < 1e-3] = 0  # ...but keep some exact zeros, as ReLU leaves them
    for k in (3, 6):
        for direction in ('largest', 'smallest'):
            got = sdd_mask(z, k, direction, scope, 'released')
            ref = _smallest_reference(z, k, scope)
            # Ties among zeros: the kept values agree, as multisets per group.
            assert _kept(z, got, scope) == _kept(z, ref, scope)
    # Unchanged: 'largest' experts under the default ranking keep the largest.
    top = sdd_mask(z, 3, 'largest', 'token', 'active')
    assert (z * top).sum() > (z * sdd_mask(z, 3, 'largest', 'token',
                                           'released')).sum()


def test_released_adapter_matches_per_expert_reference():
    torch.manual_seed(6)
    a = MODELS.build(dict(type='MoASEAdapter', embed_dims=16, bottleneck=8,
                          sdd_ranking='released'))
    assert a.sdd_directions == ['smallest', 'smallest', 'largest', 'largest']
    with torch.no_grad():
        a.experts.up_weight.normal_()
        a.experts.down_bias.normal_()
    x = torch.randn(1, 6, 16)
    p = a.keep_ratios(x)
    phi = a.routing_weights(x)
    e = a.experts
    ref = torch.zeros_like(x)
    for i in range(4):
        z = torch.relu(x @ e.down_weight[i] + e.down_bias[i])
        k = max(1, int(8 * float(p[i])))
        z = z * _smallest_reference(z, k, 'token')
        ref += phi[..., i:i + 1] * (z @ e.up_weight[i] + e.up_bias[i])
    torch.testing.assert_close(a(x, (2, 3)), 0.8 * ref, rtol=1e-5, atol=1e-6)
    # The straight-through relaxation selects the same entries.
    ste = MODELS.build(dict(type='MoASEAdapter', embed_dims=16, bottleneck=8,
                            sdd_ranking='released', asg_grad='ste'))
    ste.load_state_dict(a.state_dict())
    torch.testing.assert_close(ste(x, (2, 3)), a(x, (2, 3)))


# ------------------------------------------------------------- the method
def _built(tmp_path, **options):
    """A set-up MoASE++ on the tiny model and the first batch (14 views)."""
    from test_methods import _model_and_batches
    model, batches = _model_and_batches(tmp_path, 'MoASE++', tta=True, num=1)
    method = MoASEPP(restore_prob=0.0, **options)
    method.setup(model)
    return method, batches


def test_kl_backward_reaches_the_student_only(tmp_path):
    method, batches = _built(tmp_path)
    labels, probs = method.teacher_pseudo_labels(batches[0])
    view = method.plain_view(batches[0])
    trainable = [p for p in method.segmentor.parameters() if p.requires_grad]
    policy = list(method.learner.policy.parameters())
    with torch.enable_grad():
        # The soft CE on the image first, then (alone) the KL term.
        assert method._backward(sum(method.student_loss(
            view, labels, probs).values()))
        assert sum(p.grad is not None for p in trainable) > 0.5 * len(trainable)
        assert all(p.grad is None for p in policy)
        method.optim_wrapper.zero_grad()
        finite, views = method.distill()
    assert finite and len(views['kl']) == 1
    assert trainable and sum(p.grad is not None and bool(p.grad.abs().sum())
                             for p in trainable) > 0.5 * len(trainable)
    ups = [p for n, p in method.segmentor.named_parameters()
           if n.endswith('adapter.experts.up_weight')]
    assert ups and all(p.grad.abs().sum() > 0 for p in ups)
    assert all(p.grad is None for p in method.teacher.parameters())
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert all(p.grad is None for p in policy)  # only its own step reaches it
    assert views['log_probs'][0].requires_grad
    assert not views['strengths'][0].requires_grad
    # The policy's step fills its own gradients and leaves the student's.
    before = [p.grad.clone() for p in ups]
    method._policy_step(views)
    assert all(p.grad is not None for p in policy)
    assert all(torch.equal(b, p.grad) for b, p in zip(before, ups))


def test_step_updates_student_and_policy_and_reports_telemetry(tmp_path):
    method, batches = _built(tmp_path)
    method.telemetry = True
    policy0 = copy.deepcopy(method.learner.policy.state_dict())
    student0 = {n: p.detach().clone()
                for n, p in method.segmentor.named_parameters()}
    method.step(batches[0])
    # Before the first optimiser step the student is the teacher: on the one
    # augmented input both predict, the KL is zero.
    assert method.step_stats()['opd.kl'] == pytest.approx(0, abs=1e-6)
    method.step(batches[0])
    assert method.skipped_updates == 0
    assert set(method.last_losses) == {'loss_soft_ce', 'loss_opd_kl'}
    stats = method.step_stats()
    assert stats['opd.kl'] > 0
    for key in ('policy.mean.geometry', 'policy.mean.colour',
                'policy.mean.noise', 'policy.strength.geometry',
                'policy.reward', 'opd.kl', 'policy.baseline'):
        assert key in stats and math.isfinite(stats[key]), key
    assert stats['policy.reward'] <= -stats['opd.kl'] + 1e-6
    assert any(not torch.equal(policy0[k], v)
               for k, v in method.learner.policy.state_dict().items())
    assert any(not torch.equal(student0[n], p)
               for n, p in method.segmentor.named_parameters())
    assert float(method.learner.baseline) != 0.0


def test_fixed_strength_and_weight_zero_have_no_policy(tmp_path):
    method, batches = _built(tmp_path, fixed_strength=[0.0, 0.5, 1.0])
    assert method.learner is None
    method.telemetry = True
    method.step(batches[0])
    stats = method.step_stats()
    assert stats['policy.strength.geometry'] == 0.0
    assert stats['policy.strength.noise'] == 1.0
    assert 'policy.reward' not in stats and 'opd_policy' not in \
        method.state_dict()
    plain, _ = _built(tmp_path, opd_weight=0.0)
    plain.step(batches[0])
    assert set(plain.last_losses) == {'loss_soft_ce'}


@pytest.mark.parametrize('kw, option', [
    (dict(loss='ce'), 'loss'), (dict(opd_views=0), 'opd_views'),
    (dict(opd_temperature=0.0), 'opd_temperature'),
    (dict(fixed_strength=1.5), 'fixed_strength'),
    (dict(fixed_strength=[0.1, 0.2]), 'fixed_strength'),
    (dict(teacher='ema'), 'teacher')])
def test_bad_options(kw, option):
    with pytest.raises(ValueError, match=option):
        MoASEPP(**kw)


def test_runs_through_the_loop_with_telemetry(tmp_path):
    cfg, paths = setup_run(tmp_path, 'MoASE++', domains=('fog', ), num=2)
    runner = Runner.from_cfg(cfg)
    runner.test()
    method = runner.test_loop.method
    assert type(method) is MoASEPP and method.skipped_updates == 0
    tel = read_results(paths['work'])['passes'][0]['telemetry']
    for key in ('loss.loss_soft_ce', 'loss.loss_opd_kl', 'opd.kl',
                'policy.reward', 'policy.mean.geometry',
                'policy.strength.colour', 'drift.student.experts_abs'):
        assert key in tel, key


def test_declared_telemetry_keys_and_policy_panel():
    import re
    from mmseg_moase.methods import MoASE
    assert set(MoASE.telemetry_keys) < set(MoASEPP.telemetry_keys)
    assert MoASEPP.telemetry_panels[:-1] == MoASE.telemetry_panels
    pattern = re.compile(MoASEPP.telemetry_panels[-1]['pattern'])
    found = {(m['series'], m['kind']) for k in (
        'policy.mean.geometry', 'policy.strength.geometry',
        'policy.mean.colour', 'policy.strength.noise', 'policy.reward',
        'policy.state.entropy', 'opd.kl') for m in [pattern.match(k)] if m}
    assert found == {('geometry', 'mean'), ('geometry', 'strength'),
                     ('colour', 'mean'), ('noise', 'strength')}


# ------------------------------------------------------------------- resume
def _table(work):
    return [(p['round'], p['domain'], p['mIoU'], p['per_class_iou'],
             p['student_mIoU'],
             {k: v for k, v in p['telemetry'].items()
              if k.startswith(('loss.', 'drift.', 'policy.', 'opd.'))})
            for p in read_results(work)['passes']]


def test_kill_and_resume_equals_uninterrupted_policy_included(tmp_path):
    data = str(tmp_path / 'data')
    make_domains(data, ('fog', 'night'), num=3)
    config = write_config(
        str(tmp_path / 'cfg.py'), data, 'MoASE++', rounds=2,
        extra="ctta_method = dict(teacher='single', restore_prob=0.05)")
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    env = dict(os.environ, PYTHONPATH=ROOT)

    def cmd(work, *extra):
        return [sys.executable, TOOL, config, ckpt, '--work-dir', work,
                '--seed', '3', *extra]

    full = str(tmp_path / 'full')
    subprocess.run(cmd(full), check=True, env=env, capture_output=True,
                   timeout=600)
    # Killed at the end of step 5 (pass 2, image 2) by a hook the run calls:
    # the last saved state is step 4's, the policy's included.
    part = str(tmp_path / 'part')
    state = osp.join(part, 'ctta_state.pth')
    kill_cfg = write_signal_config(str(tmp_path / 'kill.py'), config, step=5)
    proc = subprocess.run(
        [sys.executable, TOOL, kill_cfg, ckpt, '--work-dir', part, '--seed',
         '3'], env=hook_env(env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    s = torch.load(state, weights_only=True)
    assert (s['pass_idx'], s['image_idx']) == (1, 1)
    assert 'opd_policy' in s['method']
    subprocess.run(cmd(part, '--resume'), check=True, env=env,
                   capture_output=True, timeout=600)
    assert _table(part) == _table(full) and len(_table(full)) == 4
    assert 'policy.reward' in _table(full)[0][-1]
    a = torch.load(osp.join(full, 'ctta_state.pth'), weights_only=True)
    b = torch.load(osp.join(part, 'ctta_state.pth'), weights_only=True)
    for k, v in a['method']['model'].items():
        assert torch.equal(v, b['method']['model'][k]), k
    pa, pb = a['method']['opd_policy'], b['method']['opd_policy']
    assert torch.equal(pa['baseline'], pb['baseline'])
    for k, v in pa['policy'].items():
        assert torch.equal(v, pb['policy'][k]), k
    assert pa['optimizer']['state'].keys() == pb['optimizer']['state'].keys()
    for i, st in pa['optimizer']['state'].items():
        for k, v in st.items():
            assert torch.equal(v, pb['optimizer']['state'][i][k]), (i, k)


# ------------------------------------------------------------------ configs
CONFIG_NAMES = [
    ('moase', f'{{}}_mit-{bb}_{r}rounds_cityscapes-to-acdc-960x540.py')
    for bb in ('b0', 'b5') for r in (3, 10)] + [
    ('moase', '{}_mit-b5_3rounds_cityscapes-to-cityscapes-c-1024x512.py'),
    ('synthetic', '{}_mit-b0_3rounds_synthetic-city2weather-128x256.py')] + [
    ('mmseg_checkpoints',
     f'{{}}_mit-{bb}-mmseg_{r}rounds_cityscapes-to-acdc-960x540.py')
    for bb in ('b0', 'b5') for r in (3, 10)] + [
    ('mmseg_checkpoints',
     '{}_mit-b5-mmseg_3rounds_cityscapes-to-cityscapes-c-1024x512.py')]


@pytest.mark.parametrize('folder, name', CONFIG_NAMES)
def test_every_moase_config_has_a_moase_pp_twin(folder, name):
    """MoASE++'s configs are MoASE's with the method's own options only."""
    pp = Config.fromfile(osp.join(ROOT, 'configs', folder,
                                  name.format('moase-pp'))).to_dict()
    mo = Config.fromfile(osp.join(ROOT, 'configs', folder,
                                  name.format('moase'))).to_dict()
    m_pp, m_mo = pp.pop('ctta_method'), mo.pop('ctta_method')
    for cfg in (pp, mo):
        cfg.pop('filename', None)
    assert pp == mo
    # The options as the run resolves them: the classes' defaults under the
    # configs' values.
    from mmseg_moase.methods.builder import method_defaults
    spelt = dict(m_pp)
    m_pp = {**method_defaults(m_pp['type']), **m_pp}
    m_mo = {**method_defaults(m_mo['type']), **m_mo}
    assert m_pp['type'] == 'MoASEPP' and m_pp['loss'] == 'soft_ce'
    assert m_pp['hp_mu'] == 0.0 and m_pp['opd_temperature'] == 2.0
    assert m_pp['opd_weight'] == 1.0 and m_pp['opd_views'] == 1
    assert m_pp['policy_lr'] == 1e-4 and m_pp['fixed_strength'] is None
    changed = {k for k in set(m_pp) | set(m_mo) if m_pp.get(k) != m_mo.get(k)}
    assert changed <= {'type', 'loss', 'hp_mu'} | {
        k for k in m_pp if k.startswith(('opd_', 'policy_', 'fixed_'))}
    # The options the config spells out are the method's defaults.
    import inspect
    sig = inspect.signature(MoASEPP.__init__).parameters
    for k in spelt:
        if k.startswith(('opd_', 'policy_', 'fixed_')):
            assert sig[k].default == spelt[k], k


def test_benchmark_ablation_and_sweep_labels():
    from tools.synthetic_benchmark import (ADAPTING, DEFAULT_METHODS,
                                           METHOD_CONFIGS, VARIANTS)
    from tools.synthetic_benchmark.stages import method_spec
    from tools.sweep_ctta import METHOD_LABELS
    assert METHOD_CONFIGS['MoASE++'] == \
        'moase-pp_mit-b0_3rounds_synthetic-city2weather-128x256.py'
    assert 'MoASE++' in ADAPTING and 'MoASE++' not in DEFAULT_METHODS
    assert method_spec('MoASE-released') == (
        METHOD_CONFIGS['MoASE'],
        ['model.backbone.moase_cfg.sdd_ranking=released'])
    assert VARIANTS['MoASE++-fixed-strength'][0] == 'MoASE++'
    assert METHOD_LABELS['MoASEPP'] == 'MoASE++'
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'ablate_moase', osp.join(ROOT, 'tools', 'ablate_moase.py'))
    ablate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablate)
    names, configs = ablate.row_configs(['options', 'opd'])
    assert 'MoASE-sdd-ranking-released' in configs and 'MoASE++' in names
    assert 'opd' not in ablate.DEFAULT_SUITES
    cfg = Config.fromfile(configs['MoASE-sdd-ranking-released'])
    assert cfg.model.backbone.moase_cfg.sdd_ranking == 'released'
