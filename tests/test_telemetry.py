"""Live experts and adaptation telemetry.

The SDD 'active' ranking against a reference written with plain sorting; every
expert's gradient on a real (tiny) SegFormer; the telemetry of real runs through
the Runner against values computed here from the saved state, the checkpoint and
constructed cases (threshold 0 / 1, a learning rate of zero).
"""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmseg.registry import MODELS
from mmseg_moase.models.adapters import sdd_mask
from mmseg_moase.models.adapters.moase import ExpertBank, MoASEAdapter

from conftest import config_path
from ctta_helpers import setup_run
from helpers import assert_plot


def _reference_active_mask(z, k, direction):
    """Per token: the k smallest (largest) strictly positive entries."""
    mask = torch.zeros_like(z)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in z.shape[:-1]]):
        row = z[tuple(idx)]
        pos = [(float(v), c) for c, v in enumerate(row) if v > 0]
        pos.sort(reverse=direction == 'largest')
        for _, c in pos[:k]:
            mask[tuple(idx) + (c, )] = 1.0
    return mask


@pytest.mark.parametrize('direction', ['smallest', 'largest'])
def test_sdd_active_ranking_keeps_weakest_active(direction):
    torch.manual_seed(3)
    z = torch.relu(torch.randn(2, 6, 8))
    z[0, 0] = torch.tensor([0, 0, 0, 0, 0, 0.5, 0, 0.2])  # 2 active < K = 3
    z[0, 1] = 0.0  # nothing active: nothing kept
    got = sdd_mask(z, 3, direction, 'token', ranking='active')
    assert torch.equal(got, _reference_active_mask(z, 3, direction))
    assert got[0, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 1]
    assert got[0, 1].sum() == 0
    kept_all = z * sdd_mask(z, 3, direction, 'token', ranking='all')
    if direction == 'largest':  # the same values: kept zeros are zeros
        assert torch.equal(z * got, kept_all)
    else:  # the public ranking keeps zeros wherever >= 3 entries are inactive
        has_zeros = (z == 0).sum(-1) >= 3
        assert (kept_all.sum(-1)[has_zeros] == 0).all()
        assert (z * got).sum(-1)[has_zeros & (z > 0).any(-1)].gt(0).all()


def test_sdd_active_sample_scope_and_ste_forward():
    torch.manual_seed(4)
    z = torch.relu(torch.randn(2, 5, 4))
    k = 6
    got = sdd_mask(z, k, 'smallest', 'sample', ranking='active')
    for b in range(2):
        flat = z[b].flatten()
        pos = flat[flat > 0].sort().values
        want = (flat > 0) & (flat <= pos[min(k, len(pos)) - 1])
        assert torch.equal(got[b].flatten().bool(), want)
    a = MoASEAdapter(embed_dims=16, bottleneck=8, sdd_ranking='active',
                     asg_grad='ste')
    b = MoASEAdapter(embed_dims=16, bottleneck=8, sdd_ranking='active')
    torch.nn.init.normal_(a.experts.up_weight)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 6, 16)
    assert torch.allclose(a(x, (2, 3)), b(x, (2, 3)))
    with pytest.raises(ValueError, match='sdd_ranking'):
        MoASEAdapter(embed_dims=16, sdd_ranking='weakest')


def _synthetic_moase(ranking):
    """MiT-B0 with MoASE adapters as the synthetic benchmark builds it
    (``ranking`` None: the config's default)."""
    cfg = Config.fromfile(config_path(
        'synthetic', 'moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'))
    if ranking is not None:
        cfg.model.backbone.moase_cfg.sdd_ranking = ranking
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.mark.parametrize('ranking', [None, 'all', 'active'])
def test_every_expert_gets_a_gradient_only_with_active_ranking(ranking):
    """Fresh adapters: the up projections are zero, so an expert's up weight
    gets a gradient exactly where its kept activations are nonzero."""
    torch.manual_seed(0)
    model = _synthetic_moase(ranking)
    x = torch.randn(1, 3, 64, 128)
    logits = model.encode_decode(x, [dict(img_shape=(64, 128),
                                          ori_shape=(64, 128))])
    logits.logsumexp(1).mean().backward()
    banks = [m for m in model.modules() if isinstance(m, ExpertBank)]
    assert len(banks) == 8
    grads = torch.stack([b.up_weight.grad.flatten(1).abs().sum(1) for b in banks])
    if ranking != 'all':  # the default is 'active'
        assert (grads > 0).all(), grads
    else:  # the public code: expert 0 (smallest 1/4) keeps only zeros
        assert (grads[:, 0] == 0).any() and (grads[:, 2:] > 0).all()


def _run(cfg):
    runner = Runner.from_cfg(cfg)
    runner.test()
    return runner


def _passes(work):
    with open(osp.join(work, 'ctta_results.json')) as f:
        text = f.read()
    assert 'NaN' not in text  # strict JSON
    return json.loads(text)['passes']


def _drift(state, source, names):
    diff = sum(float((state[n].float() - source[n].float()).pow(2).sum())
               for n in names) ** 0.5
    base = sum(float(source[n].float().pow(2).sum()) for n in names) ** 0.5
    return diff / base


def test_moase_telemetry_matches_saved_state(tmp_path):
    cfg, paths = setup_run(tmp_path, 'MoASE', domains=('fog', 'night'), num=3)
    cfg.test_cfg.method.update(adapter_lr=1e-2, base_lr=1e-3)
    cfg.model.backbone.moase_cfg.sdd_ranking = 'all'  # the public code's
    runner = _run(cfg)
    passes = _passes(paths['work'])
    assert len(passes) == 2
    tel = passes[-1]['telemetry']
    assert 0 <= passes[-1]['student_mIoU'] <= 100
    for key in ('loss.loss_ce', 'loss.loss_hp', 'gate.plain_share',
                'pseudo_label.source_agreement', 'drift.student.backbone',
                'drift.teacher.backbone', 'drift.student.head',
                'drift.student.experts_abs', 'moase.all.expert0.dead_share',
                'moase.stage1.output_ratio', 'moase.stage4.expert3.k'):
        assert key in tel, key
    # Drift against the checkpoint and the final state, computed here.
    state = torch.load(osp.join(paths['work'], 'ctta_state.pth'),
                       weights_only=True)['method']
    source = torch.load(paths['ckpt'], weights_only=True)['state_dict']
    student, teacher = state['model'], state['teacher']
    seg = runner.test_loop.method.segmentor
    norms = {f'{mn}.{pn}' for mn, m in seg.named_modules()
             if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))
             for pn, _ in m.named_parameters(recurse=False)}
    # Tensors that start at zero (nn.MultiheadAttention's biases) have no
    # relative drift: they are reported apart, as `backbone_abs`.
    backbone = [n for n, _ in seg.named_parameters() if n.startswith(
        'backbone.') and n not in norms and '.adapter.' not in n
        and source[n].any()]
    assert 'drift.student.backbone_abs' in tel
    ups = [n for n in student if n.endswith(('experts.up_weight',
                                             'experts.up_bias',
                                             'experts.down_bias'))]
    assert tel['drift.student.experts_abs'] == pytest.approx(sum(
        float(student[n].pow(2).sum()) for n in ups) ** 0.5, rel=1e-3)
    assert tel['drift.student.backbone'] == pytest.approx(
        _drift(student, source, backbone), rel=1e-3)
    assert tel['drift.teacher.backbone'] == pytest.approx(
        _drift(teacher, source, backbone), rel=1e-3)
    assert 0 < tel['drift.teacher.backbone'] < tel['drift.student.backbone']
    # Shares and K are within their ranges; 'all' ranking: expert 0 dead.
    for s in range(1, 5):
        assert tel[f'moase.stage{s}.expert0.dead_share'] > 0.9
        for e in range(4):
            assert 0 <= tel[f'moase.stage{s}.expert{e}.dag_weight'] <= 1
            assert tel[f'moase.stage{s}.expert{e}.k'] >= 1
    assert sum(tel[f'moase.all.expert{e}.dag_weight']
               for e in range(4)) == pytest.approx(1.0, abs=1e-5)
    # Logged to the visualizer's backend where mmengine users look (the
    # runner's: mmengine shares one visualizer between runners built within
    # the same second, so it may write under another test's work dir).
    scalars = runner.visualizer.get_backend('LocalVisBackend')._scalar_save_file
    lines = [json.loads(x) for x in open(scalars).read().splitlines()]
    assert any('ctta/moase.all.expert0.dead_share' in x for x in lines)
    assert any('ctta/student_mIoU' in x for x in lines)
    assert_plot(osp.join(paths['work'], 'ctta_telemetry.png'))
    csv_head = open(osp.join(paths['work'], 'ctta_results.csv')).readline()
    assert 'student_mIoU' in csv_head and 'drift.student.backbone' in csv_head
    assert '(student, not scored)' in open(
        osp.join(paths['work'], 'ctta_results.md')).read()
    del runner


def test_active_ranking_has_no_dead_tokens_where_neurons_fire(tmp_path):
    cfg, paths = setup_run(tmp_path, 'MoASE', domains=('fog', ), num=2)
    cfg.model.backbone.moase_cfg.sdd_ranking = 'active'
    _run(cfg)
    tel = _passes(paths['work'])[0]['telemetry']
    assert tel['moase.all.expert0.dead_share'] < 0.05


def test_student_miou_equals_scored_when_student_is_teacher(tmp_path):
    """Learning rate 0, no restore: student == teacher == source, so the
    student's predictions (from its loss) score what the teacher scores."""
    cfg, paths = setup_run(tmp_path, 'MoASE', domains=('fog', ), num=3)
    cfg.test_cfg.method.update(teacher='single', adapter_lr=0.0, base_lr=0.0,
                               hp_mu=0.0)
    _run(cfg)
    p = _passes(paths['work'])[0]
    assert p['student_mIoU'] == pytest.approx(p['mIoU'], abs=1e-6)
    assert p['telemetry']['drift.student.backbone'] == 0
    assert 'gate.plain_share' not in p['telemetry']  # no anchor


@pytest.mark.parametrize('threshold,share', [(0.0, 1.0), (1.0, 0.0)])
def test_cotta_gate_share_and_source_agreement(tmp_path, threshold, share):
    cfg, paths = setup_run(tmp_path, 'CoTTA', domains=('fog', ), num=2)
    cfg.test_cfg.method.update(threshold=threshold)
    cfg.test_cfg.method.optim_wrapper.optimizer.lr = 0.0
    _run(cfg)
    tel = _passes(paths['work'])[0]['telemetry']
    assert tel['gate.plain_share'] == share
    if threshold == 0.0:  # teacher == anchor == source: its plain argmax
        assert tel['pseudo_label.source_agreement'] == 1.0
    else:
        assert 0 <= tel['pseudo_label.source_agreement'] <= 1


def test_source_has_no_drift_and_telemetry_can_be_off(tmp_path):
    cfg, paths = setup_run(tmp_path, 'TENT', domains=('fog', ), num=2)
    _run(cfg)
    tel = _passes(paths['work'])[0]['telemetry']
    assert set(k for k in tel if k.startswith('drift.')) == {
        'drift.student.norm', 'drift.student.norm_abs'}  # LayerNorm biases: 0
    assert tel['drift.student.norm'] > 0 and 'loss.entropy' in tel
    cfg, paths = setup_run(tmp_path, 'CoTTA', domains=('fog', ), num=2,
                           work='off')
    cfg.test_cfg.telemetry = False
    _run(cfg)
    p = _passes(paths['work'])[0]
    assert 'telemetry' not in p and 'student_mIoU' not in p


def test_restore_adapters_option(tmp_path):
    """restore_prob=1 resets every restored element after each step: with
    restore_adapters=False the experts keep what they learnt, the rest not."""
    out = {}
    for keep in (True, False):
        cfg, paths = setup_run(tmp_path, 'MoASE', domains=('fog', ), num=2,
                               work=f'w{keep}')
        cfg.test_cfg.method.update(restore_prob=1.0, restore_adapters=keep)
        method = _run(cfg).test_loop.method
        s = method.segmentor.state_dict()
        source = torch.load(paths['ckpt'], weights_only=True)['state_dict']
        ups = [k for k in s if k.endswith('experts.up_weight')]
        out[keep] = (sum(float(s[k].abs().sum()) for k in ups),
                     all(torch.equal(s[k], source[k]) for k in source
                         if not k.endswith(('running_mean', 'running_var',
                                            'num_batches_tracked'))))
    assert out[True] == (0.0, True)
    assert out[False][0] > 0 and out[False][1]


def test_bn_stats_test_batch_option(tmp_path):
    from ctta_helpers import make_domains
    # Large enough that the 0.5x view keeps > 1 value per channel at 1/32.
    make_domains(str(tmp_path / 'data'), ('fog', ), num=1, size=(64, 128))
    cfg, _ = setup_run(tmp_path, 'CoTTA', domains=('fog', ), num=1)
    cfg.test_cfg.method.update(bn_stats='test_batch')
    method = _run(cfg).test_loop.method
    bns = [m for m in method.segmentor.modules()
           if isinstance(m, torch.nn.BatchNorm2d)]
    tbns = [m for m in method.teacher.modules()
            if isinstance(m, torch.nn.BatchNorm2d)]
    abns = [m for m in method.anchor.modules()
            if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.training for m in bns + tbns)
    assert not any(m.training for m in abns)
    with pytest.raises(ValueError, match='bn_stats'):
        from mmseg_moase.methods import CoTTA
        CoTTA(bn_stats='batch')


@pytest.mark.parametrize('method', ['TENT', 'CoTTA', 'MoASE', 'ViDA'])
def test_scored_predictions_change_along_the_stream(tmp_path, method):
    """The same images, round 1 vs round 2: an adapting method's scored output
    must change (learning rates x100 and EMA momentum 0.9 so that 2 x 3 steps of
    a tiny model move the scored model visibly; the change is asserted, not a
    score)."""
    import numpy as np
    from PIL import Image
    cfg, paths = setup_run(tmp_path, method, domains=('fog', ), num=3,
                           rounds=2)
    out = str(tmp_path / 'preds')
    cfg.test_cfg.out_preds = out
    m = cfg.test_cfg.method
    if method == 'MoASE':
        m.update(adapter_lr=2e-2, base_lr=7.5e-4)
    elif method == 'ViDA':
        m.update(adapter_lr=2e-2, lr=7.5e-4)
    else:
        m.optim_wrapper.optimizer.lr *= 100
    for h in cfg.get('custom_hooks', []):
        if h['type'] == 'EMATeacherHook':
            h['momentum'] = 0.9
    _run(cfg)
    changed = 0
    for f in sorted(glob.glob(osp.join(out, 'round1', 'fog', '*', '*.png'))):
        a = np.array(Image.open(f))
        b = np.array(Image.open(f.replace('round1', 'round2')))
        changed += int((a != b).sum())
    assert changed > 0
