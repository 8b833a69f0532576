"""ViDA: the adapted MiT against stock mmseg, HKA by hand, the method end to end,
the adapter warm-up through mmengine's Runner."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.runner import Runner

from mmseg.models.backbones import MixVisionTransformer
from mmseg.registry import MODELS
from mmseg_moase.engine import parameter_groups
from mmseg_moase.methods import ViDA
from mmseg_moase.methods.vida import hka_scales, view_uncertainty
from mmseg_moase.models.backbones import MixVisionTransformerViDA
from mmseg_moase.models.fast_attention import skip_attention_weights

from conftest import TINY_MIT, config_path, segformer_pair
from ctta_helpers import setup_run
from helpers import write_cityscapes_tree


def _randomize(model, std=0.05):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'adapter.' in n and n.endswith('.up'):
                p.normal_(std=std)


def _segformer_pair(cfg_file):
    return segformer_pair(cfg_file, ('vida_low_rank', 'vida_high_rank', 'vida_stages'))


@pytest.mark.parametrize('size', ['b0', 'b5'])
def test_fresh_vida_segformer_equals_stock_mmseg(size):
    stock, ours = _segformer_pair(config_path(
        '_base_', 'models', f'segformer_mit-{size}_nvlabs_vida.py'))
    n_blocks = dict(b0=8, b5=52)[size]
    assert len(ours.backbone.adapters()) == n_blocks
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        fast = copy.deepcopy(stock)
        skip_attention_weights(fast)  # as the CTTA loop runs every model
        a, b = fast._forward(x), ours._forward(x)
        assert a.shape == (1, 19, 16, 24)
        assert torch.equal(a, b)  # same kernels: fresh adapters add exact zeros
        # mmseg's own forward computes the attention weights explicitly; the
        # fused kernel rounds differently (float32: 1.3e-6 on B5's logits), in
        # float64 the two agree to rounding.
        c, d = stock.double()._forward(x.double()), ours.double()._forward(
            x.double())
    assert (c - d).abs().max() <= 1e-12


def test_vida_adapters_sit_on_q_kv_and_output_projections():
    ours = MixVisionTransformerViDA(**TINY_MIT, vida_low_rank=1,
                                    vida_high_rank=4, vida_stages=[1, 3])
    names = [n for n, _ in ours.adapters()]
    assert names == ['layers.1.1.0.attn.adapter', 'layers.1.1.1.attn.adapter',
                     'layers.3.1.0.attn.adapter']
    ad = ours.adapters()[0][1]
    e = 16  # stage 2 of the tiny MiT: 8 x 2 heads
    assert ad.q.low.down.shape == (1, e) and ad.q.high.down.shape == (4, e)
    assert ad.kv.low.up.shape == (2 * e, 1) and ad.proj.high.up.shape == (e, 4)
    assert torch.count_nonzero(ad.q.low.up) == 0
    # Released initialisation: down ~ N(0, (1/r^2)^2).
    big = MixVisionTransformerViDA(**dict(TINY_MIT, embed_dims=64),
                                   vida_high_rank=8)
    downs = torch.cat([a.kv.high.down.flatten() for _, a in big.adapters()])
    assert abs(float(downs.std()) - 1 / 64) < 0.1 / 64
    # A stock state dict loads with only adapter keys missing.
    stock = MixVisionTransformer(**TINY_MIT)
    res = ours.load_state_dict(stock.state_dict(), strict=False)
    assert res.unexpected_keys == [] and all(
        '.adapter.' in k for k in res.missing_keys)
    with pytest.raises(ValueError, match='vida_stages'):
        MixVisionTransformerViDA(**TINY_MIT, vida_stages=[4])


def test_merged_weights_equal_parallel_branches():
    """W x + s_l U_l D_l x + s_h U_h D_h x, computed branch by branch as the
    released ViDAInjectedLinear does, against the merged-weight attention."""
    ours = MixVisionTransformerViDA(**TINY_MIT, vida_high_rank=4).eval()
    _randomize(ours)
    _, ad = ours.adapters()[-1]
    ad.scale_low, ad.scale_high = 1.3, 0.7
    attn = ours.layers[3][1][-1].attn
    mha = attn.attn
    x = torch.randn(5, 2, 64)  # (N, B, C), sequence first
    e = 64
    w_q, w_k, w_v = mha.in_proj_weight.split(e)
    b_q, b_k, b_v = mha.in_proj_bias.split(e)

    def branch(p, x):
        return (1.3 * (x @ p.low.down.T @ p.low.up.T) +
                0.7 * (x @ p.high.down.T @ p.high.up.T))

    q = x @ w_q.T + b_q + branch(ad.q, x)
    kv = x @ torch.cat([w_k, w_v]).T + torch.cat([b_k, b_v]) + branch(ad.kv, x)
    k, v = kv.split(e, dim=-1)
    heads = mha.num_heads

    def split(t):
        return t.reshape(5, 2 * heads, e // heads).transpose(0, 1)

    att = torch.softmax(split(q) @ split(k).transpose(1, 2) /
                        (e // heads)**0.5, -1) @ split(v)
    o = att.transpose(0, 1).reshape(5, 2, e)
    ref = o @ mha.out_proj.weight.T + mha.out_proj.bias + branch(ad.proj, o)
    with torch.no_grad():
        got = attn.attend(x, x)
    assert (got - ref).abs().max() < 1e-5


def test_hka_scales_by_hand():
    assert hka_scales(0.1, 0.05, 1.0, 1.0) == pytest.approx((0.9, 1.1))
    assert hka_scales(0.02, 0.05, 1.0, 1.0) == pytest.approx((1.02, 0.98))
    assert hka_scales(0.05, 0.05, 1.0, 1.0) == pytest.approx((0.95, 1.05))
    # The released elif sets only the low-rank scale; the high one keeps 1.0.
    assert hka_scales(0.1, 0.05, 1.0, 1.0, 'released') == pytest.approx(
        (0.9, 1.0))
    assert hka_scales(0.02, 0.05, 0.9, 1.0, 'released') == pytest.approx(
        (1.02, 1.0))


def test_view_uncertainty_by_hand_and_against_torch_var():
    # Three views of constant maps 0, 1, 2: unbiased variance 1, u = 0.1.
    views = [[torch.full((2, 3, 4), float(v))] for v in (0, 1, 2)]
    assert view_uncertainty(views) == pytest.approx(0.1)
    g = torch.Generator().manual_seed(0)
    outs = [[torch.randn(3, 5, 6, generator=g) * 4 + 10,
             torch.randn(3, 2, 2, generator=g)] for _ in range(6)]
    ref = [0.1 * float(torch.var(torch.stack([o[i] for o in outs]), dim=0)
                       .mean()) for i in range(2)]
    assert view_uncertainty(outs) == pytest.approx(sum(ref) / 2, rel=1e-5)
    with pytest.raises(ValueError, match='two views'):
        view_uncertainty(outs[:1])


def _run(cfg):
    runner = Runner.from_cfg(cfg)
    runner.test()
    return runner


def test_vida_optimiser_groups_and_backward_reach(tmp_path):
    cfg, _ = setup_run(tmp_path, 'ViDA', domains=('fog', ), num=1)
    model = MODELS.build(cfg.model)
    vida = ViDA(**{k: v for k, v in cfg.test_cfg.method.items() if k != 'type'})
    vida.setup(model)
    groups = parameter_groups(model)
    params = dict(model.named_parameters())
    adapters = {n for n in params if '.adapter.' in n}
    assert set(groups['vida']) == adapters
    by_lr = {g['lr']: {id(p) for p in g['params']}
             for g in vida.optim_wrapper.optimizer.param_groups}
    assert set(by_lr) == {2e-4, 7.5e-6}
    assert by_lr[2e-4] == {id(params[n]) for n in adapters}
    assert by_lr[7.5e-6] == {id(p) for n, p in params.items()
                             if n not in adapters}
    # With trained (non-zero) up weights a backward reaches every parameter of
    # both groups; with fresh ones the down weights get exactly zero.
    x = torch.randn(1, 3, 32, 64)
    model._forward(x).sum().backward()
    assert all(params[n].grad is not None for n in params)
    assert all(torch.count_nonzero(params[n].grad) == 0
               for n in adapters if n.endswith('.down'))
    model.zero_grad()
    _randomize(model)
    model._forward(x).sum().backward()
    zero = [n for n, p in params.items() if torch.count_nonzero(p.grad) == 0]
    assert zero == []
    # 'adapters' freezes everything else.
    only = ViDA(trainable='adapters')
    only.setup(MODELS.build(cfg.model))
    trained = {n for n, p in only.segmentor.named_parameters()
               if p.requires_grad}
    assert trained == adapters


def test_vida_stream_end_to_end(tmp_path):
    cfg, paths = setup_run(tmp_path, 'ViDA', domains=('fog', 'night'), num=2)
    cfg.test_cfg.method.update(restore_prob=0.0, adapter_lr=1e-2)
    for h in cfg.custom_hooks:
        if h['type'] == 'EMATeacherHook':
            h['group_momentum'] = dict(vida=0.0)  # teacher adapters = student's
    runner = _run(cfg)
    method = runner.test_loop.method
    assert method.skipped_updates == 0
    assert set(method.last_losses) == {'loss_soft_ce'}
    s = dict(method.segmentor.named_parameters())
    t = dict(method.teacher.named_parameters())
    ups = [n for n in s if '.adapter.' in n and n.endswith('.up')]
    assert ups and all(torch.count_nonzero(s[n]) > 0 for n in ups)
    assert all(torch.equal(s[n], t[n]) for n in s if '.adapter.' in n)
    others = [n for n in s if '.adapter.' not in n]
    assert any(not torch.equal(s[n], t[n]) for n in others)
    # Both models carry the scales of the last step.
    for model in (method.segmentor, method.teacher):
        for _, ad in model.backbone.adapters():
            assert (ad.scale_low, ad.scale_high) == method.scales
    assert method.scales != (1.0, 1.0)
    import json
    with open(osp.join(paths['work'], 'ctta_results.json')) as f:
        res = json.load(f)
    tel = res['passes'][0]['telemetry']
    assert tel['hka.uncertainty'] > 0
    assert {'hka.scale_low', 'hka.scale_high', 'hka.high_rank_share'} <= set(tel)
    assert res['passes'][0]['student_mIoU'] is not None


def test_vida_released_scale_rule_and_bad_options(tmp_path):
    cfg, _ = setup_run(tmp_path, 'ViDA', domains=('fog', ), num=2)
    cfg.test_cfg.method.update(scale_rule='released', hka_views=3)
    method = _run(cfg).test_loop.method
    assert method.scales[1] == 1.0 and method.scales[0] != 1.0
    for kw, option in ((dict(scale_rule='elif'), 'scale_rule'),
                       (dict(uncertainty_from='probs'), 'uncertainty_from'),
                       (dict(trainable='norm'), 'trainable'),
                       (dict(hka_views=1), 'hka_views')):
        with pytest.raises(ValueError, match=option):
            ViDA(**kw)


def test_vida_refuses_model_without_adapters(tmp_path):
    cfg, _ = setup_run(tmp_path, 'ViDA', domains=('fog', ), num=1)
    for k in ('vida_low_rank', 'vida_high_rank'):
        cfg.model.backbone.pop(k)
    cfg.model.backbone.type = 'MixVisionTransformer'
    with pytest.raises(ValueError, match='MixVisionTransformerViDA'):
        _run(cfg)


def test_warmup_trains_only_adapters_and_keeps_bn_statistics(tmp_path):
    """The warm-up config through mmengine's Runner, on a tiny Cityscapes-layout
    set: every non-adapter tensor of the result (BatchNorm running statistics
    included) equals the source checkpoint, the adapters moved."""
    from mmseg_moase.apis.warmup import prepare_warmup_config, run_warmup
    data = str(tmp_path / 'data')
    for split, seed in (('train', 1), ('val', 2)):
        write_cityscapes_tree(data, split=split, city='c0', num=4,
                              size=(64, 128), seed=seed)
    config = config_path('synthetic',
                         'vida-warmup_mit-b0_synthetic-source_128x256.py')
    cfg = Config.fromfile(config)
    torch.manual_seed(0)
    src = MODELS.build(cfg.model)
    src.init_weights()
    state = {k: v for k, v in src.state_dict().items() if '.adapter.' not in k}
    ckpt = str(tmp_path / 'source.pth')
    torch.save(dict(state_dict=state, meta=dict()), ckpt)
    opts = {'train_dataloader.dataset.data_root': data,
            'val_dataloader.dataset.data_root': data,
            'test_dataloader.dataset.data_root': data,
            'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False,
            'val_dataloader.num_workers': 0,
            'train_dataloader.batch_size': 2,
            'model.backbone.vida_high_rank': 8,
            'log_level': 'WARNING'}
    cfg = prepare_warmup_config(config, ckpt, str(tmp_path / 'work'),
                                max_iters=3, cfg_options=opts)
    out = run_warmup(cfg, validate=False)
    after = torch.load(out['checkpoint'], weights_only=True)['state_dict']
    changed = [k for k in state if not torch.equal(state[k], after[k])]
    assert changed == []
    ups = [k for k in after if '.adapter.' in k and k.endswith('.up')]
    assert ups and any(torch.count_nonzero(after[k]) > 0 for k in ups)
    with pytest.raises(ValueError, match='SourceWeightsHook'):
        prepare_warmup_config(config_path(
            'synthetic', 'segformer_mit-b0_synthetic-source_128x256.py'), ckpt)


def test_ema_group_momentum_by_hand():
    from mmseg_moase.engine import EMATeacherHook, ema_update
    student = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9, momenta={'1.weight': 0.5})
    t = dict(teacher.named_parameters())
    for (n, _), b in zip(student.named_parameters(), before):
        share = 0.5 if n == '1.weight' else 0.1
        assert torch.allclose(t[n], b + share)
    with pytest.raises(ValueError, match='unknown groups'):
        EMATeacherHook(group_momentum=dict(adapters=0.9))
    with pytest.raises(ValueError, match=r'group_momentum\.vida'):
        EMATeacherHook(group_momentum=dict(vida=1.5))
