"""MoASE adapter: SDD, ASG, DAG, output, configuration errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmseg.registry import MODELS
from mmseg_moase.models.adapters import MoASEAdapter, sdd, sdd_mask
from mmseg_moase.models.adapters.moase import default_sdd_experts


@pytest.mark.parametrize('direction', ['largest', 'smallest'])
def test_sdd_token_scope_keeps_k_per_token(direction):
    z = torch.randn(2, 5, 12, requires_grad=True)
    out = sdd(z, 0.25, direction, 'token')  # K = int(12 * 0.25) = 3
    kept = out != 0
    assert kept.sum(-1).eq(3).all()
    zs = z.detach()
    for b in range(2):
        for n in range(5):
            ranked = sorted(zs[b, n].tolist(), reverse=direction == 'largest')
            assert sorted(zs[b, n][kept[b, n]].tolist()) == sorted(ranked[:3])
    # Kept values are unchanged, the rest are zero.
    assert torch.equal(out[kept], zs[kept])
    upstream = torch.randn_like(out)
    out.backward(upstream)
    assert torch.equal(z.grad[kept], upstream[kept])
    assert z.grad[~kept].abs().sum() == 0


@pytest.mark.parametrize('direction', ['largest', 'smallest'])
def test_sdd_sample_scope_keeps_k_per_sample(direction):
    z = torch.randn(3, 7, 4, requires_grad=True)
    out = sdd(z, 0.5, direction, 'sample')  # K = floor(7 * 4 * 0.5) = 14
    kept = out != 0
    assert kept.flatten(1).sum(-1).eq(14).all()
    for b in range(3):
        flat = z.detach()[b].flatten()
        thresh = flat.sort(descending=direction == 'largest').values[13]
        sel = flat[kept[b].flatten()]
        assert (sel >= thresh).all() if direction == 'largest' else (
            sel <= thresh).all()
    # Not per token: some token keeps a different count than 2.
    assert not kept.sum(-1).eq(2).all()
    out.sum().backward()
    assert torch.equal(z.grad, kept.float())


def test_sdd_mask_counts():
    z = torch.rand(1, 3, 16)
    assert sdd_mask(z, 5, 'largest', 'token').sum() == 15


def _adapter(**kw):
    cfg = dict(type='MoASEAdapter', embed_dims=16, bottleneck=8)
    cfg.update(kw)
    return MODELS.build(cfg)


def test_fresh_adapter_outputs_zero():
    a = _adapter()
    x = torch.randn(2, 6, 16)
    assert torch.equal(a(x, (2, 3)), torch.zeros_like(x))


def test_defaults_follow_spec():
    a = MoASEAdapter(embed_dims=320)
    assert a.bottleneck == 20 and a.num_experts == 4
    assert MoASEAdapter(embed_dims=64).bottleneck == 16
    assert a.sdd_directions == ['smallest', 'smallest', 'largest', 'largest']
    assert a.sdd_ratios == [0.25, 0.5, 0.25, 0.5]
    assert (a.sdd_scope, a.eta, a.dag_input, a.asg_grad, a.scale) == (
        'token', 0.1, 'low', 'none', 0.8)
    assert a.sdd_ranking == 'active'  # by measurement (docs/results.md, Live experts)
    assert default_sdd_experts(2) == (['smallest', 'largest'], [0.25, 0.25])


def test_dag_weights_sum_to_one_and_read_the_right_half():
    x = torch.cat([torch.full((1, 3, 4), 5.0) + torch.rand(1, 3, 4),
                   -5.0 - torch.rand(1, 3, 4)], dim=-1)  # D = 8
    first = torch.zeros(8)
    first[:4] = 1
    for dag_input, keep in (('high', first), ('low', 1 - first)):
        a = _adapter(embed_dims=8, dag_input=dag_input)
        phi = a.routing_weights(x)
        assert torch.allclose(phi.sum(-1), torch.ones(1, 3))
        w, b = a.dag.weight.detach().numpy(), a.dag.bias.detach().numpy()
        xm = (x * keep).numpy()
        logits = xm @ w.T + b
        ref = np.exp(logits - logits.max(-1, keepdims=True))
        ref = ref / ref.sum(-1, keepdims=True)
        np.testing.assert_allclose(phi.detach().numpy(), ref, rtol=1e-5,
                                   atol=1e-6)


def test_asg_keep_ratios_by_hand():
    a = _adapter(eta=0.1)
    x = torch.randn(2, 5, 16)
    w, b = a.asg.weight.detach().numpy(), a.asg.bias.detach().numpy()
    logits = x.numpy() @ w.T + b
    eps = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expect = np.array([0.25, 0.5, 0.25, 0.5]) + 0.1 * eps.reshape(-1, 4).mean(0)
    np.testing.assert_allclose(a.keep_ratios(x).numpy(), expect, rtol=1e-5)


def _reference_sdd(z, ratio, direction, scope, ranking):
    """SDD written with Python sorting: per group (a token's channels, or a
    sample's whole map) keep the K = int(group * ratio) largest / smallest
    entries; 'active' ranks only the positive ones."""
    rows = z.reshape(-1, z.shape[-1]) if scope == 'token' else \
        z.reshape(z.shape[0], -1)
    out = torch.zeros_like(rows)
    k = max(1, min(rows.shape[1], int(rows.shape[1] * ratio)))
    for r, row in enumerate(rows.tolist()):
        cand = [(v, c) for c, v in enumerate(row)
                if ranking == 'all' or v > 0]
        cand.sort(reverse=direction == 'largest')
        for _, c in cand[:k]:
            out[r, c] = rows[r, c]
    return out.reshape(z.shape)


@pytest.mark.parametrize('ranking', ['all', 'active'])
@pytest.mark.parametrize('scope', ['token', 'sample'])
def test_adapter_output_matches_per_expert_reference(scope, ranking):
    """Stacked implementation vs. a plain loop over experts written from the
    method's equations."""
    a = _adapter(sdd_scope=scope, sdd_ranking=ranking, scale=0.7)
    with torch.no_grad():
        a.experts.up_weight.normal_()
        a.experts.up_bias.normal_()
        a.experts.down_bias.normal_()
    x = torch.randn(2, 6, 16)
    # Keep ratios and routing weights from the equations, not from the adapter's
    # own helpers: p_i = q_i + eta * mean(softmax(W_a x + b_a)_i) and
    # phi = softmax(W_d SDD_1/2(x) + b_d), SDD keeping each token's weakest half.
    p = torch.tensor([0.25, 0.5, 0.25, 0.5]) + 0.1 * F.softmax(
        x @ a.asg.weight.detach().T + a.asg.bias.detach(), -1).mean((0, 1))
    low = _reference_sdd(x, 0.5, 'smallest', 'token', 'all')
    phi = F.softmax(low @ a.dag.weight.detach().T + a.dag.bias.detach(), -1)
    ref = torch.zeros_like(x)
    e = a.experts
    for i in range(4):
        z = F.relu(x @ e.down_weight[i] + e.down_bias[i])
        z = _reference_sdd(z, float(p[i]), a.sdd_directions[i], scope, ranking)
        ref += phi[..., i:i + 1] * (z @ e.up_weight[i] + e.up_bias[i])
    torch.testing.assert_close(a(x, (2, 3)), 0.7 * ref, rtol=1e-5, atol=1e-6)


def test_mixffn_expert_runs_and_starts_at_zero():
    a = _adapter(expert_type='mixffn')
    x = torch.randn(1, 12, 16)
    assert torch.equal(a(x, (3, 4)), torch.zeros_like(x))
    assert a.experts.dwconv.weight.shape == (32, 1, 3, 3)


def test_asg_grad_none_blocks_router_gradient_ste_passes_it():
    x = torch.randn(2, 6, 16)
    for mode, reaches in (('none', False), ('ste', True)):
        a = _adapter(asg_grad=mode)
        with torch.no_grad():
            a.experts.up_weight.normal_()
        out = a(x, (2, 3))
        out.pow(2).sum().backward()
        got = a.asg.weight.grad is not None and a.asg.weight.grad.abs().sum() > 0
        assert got == reaches, mode
    # 'ste' changes gradients only: the forward output is the faithful one.
    torch.manual_seed(1)
    a1 = _adapter(asg_grad='none')
    torch.manual_seed(1)
    a2 = _adapter(asg_grad='ste')
    with torch.no_grad():
        a1.experts.up_weight.fill_(0.3)
        a2.experts.up_weight.fill_(0.3)
    assert torch.equal(a1(x, (2, 3)), a2(x, (2, 3)))


def _relaxed_mask(z, ratio, direction, scale):
    """The relaxation 'ste' differentiates, written out here: a sigmoid around
    the threshold at the fractional rank ``C * ratio`` (linear between the
    neighbouring order statistics), token scope, every entry ranked."""
    largest = direction == 'largest'
    ranked = z.sort(dim=-1, descending=largest).values
    pos = ratio * z.shape[-1]
    lo = int(np.floor(pos))
    tau = ranked[..., lo - 1] + (pos - lo) * (ranked[..., lo] - ranked[..., lo - 1])
    sign = 1.0 if largest else -1.0
    return torch.sigmoid(sign * (z - tau[..., None]) / scale)


@pytest.mark.parametrize('direction', ['largest', 'smallest'])
def test_ste_gradient_matches_finite_differences_of_the_relaxed_mask(direction):
    from mmseg_moase.models.adapters.sdd import soft_threshold_mask
    torch.manual_seed(3)
    z = torch.randn(2, 3, 16, dtype=torch.float64)
    w = torch.randn_like(z)
    temperature = 0.5
    # The implementation holds the sigmoid's width fixed (its std detached).
    scale = temperature * z.std(dim=-1, keepdim=True)
    ratio0, h = 0.53, 1e-4  # rank 8.48: one linear piece of the threshold
    ratio = torch.tensor(ratio0, dtype=torch.float64, requires_grad=True)
    zz = z.clone().requires_grad_(True)
    mask, hard = soft_threshold_mask(zz, ratio, direction, 'token', temperature)
    assert torch.equal(mask.detach(), hard)  # the forward is the hard mask
    (w * mask).sum().backward()

    def loss(z_, r_):
        return float((w * _relaxed_mask(z_, r_, direction, scale)).sum())

    fd = (loss(z, ratio0 + h) - loss(z, ratio0 - h)) / (2 * h)
    assert abs(fd) > 1e-2  # a gradient of some size to compare
    assert np.sign(float(ratio.grad)) == np.sign(fd)
    assert float(ratio.grad) == pytest.approx(fd, rel=1e-4)
    # Gradient in z (threshold included): a few entries, by central differences.
    for idx in [(0, 0, 0), (1, 2, 5), (0, 1, 15)]:
        e = torch.zeros_like(z)
        e[idx] = h
        fd_z = (loss(z + e, ratio0) - loss(z - e, ratio0)) / (2 * h)
        assert float(zz.grad[idx]) == pytest.approx(fd_z, rel=1e-4, abs=1e-8)


@pytest.mark.parametrize('kw, option', [
    (dict(sdd_ratios=[0.25, 0.5]), 'sdd_ratios'),
    (dict(sdd_directions=['largest'] * 3), 'sdd_directions'),
    (dict(sdd_ratios=[0.25, 0.5, 1.5, 0.5]), 'sdd_ratios'),
    (dict(sdd_ratios=[0.0, 0.5, 0.25, 0.5]), 'sdd_ratios'),
    (dict(bottleneck=0), 'bottleneck'),
    (dict(dag_input='middle'), 'dag_input'),
    (dict(sdd_scope='image'), 'sdd_scope'),
    (dict(asg_grad='gumbel'), 'asg_grad'),
    (dict(expert_type='conv'), 'expert_type'),
    (dict(sdd_directions=['up'] * 4), 'sdd_directions'),
    (dict(num_experts=0), 'num_experts'),
])
def test_bad_adapter_options_raise_value_error(kw, option):
    with pytest.raises(ValueError, match=option):
        _adapter(**kw)


def test_bad_choice_message_lists_allowed_values():
    with pytest.raises(ValueError, match=r"\['low', 'high'\]"):
        _adapter(dag_input='middle')
    with pytest.raises(ValueError, match=r"\['token', 'sample'\]"):
        _adapter(sdd_scope='image')
