"""MiT attention without the discarded weight map, against mmseg's stock layer.

Reference: mmseg 1.2.2's ``MixVisionTransformer`` as built (its attention calls
``nn.MultiheadAttention`` with ``need_weights=True``). The switched model has the
same parameters; stage outputs must agree to rtol/atol 1e-5 and every parameter
gradient to rtol 1e-4 / atol 1e-5 (the fused kernel sums in another order).
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmseg.models.backbones.mit import EfficientMultiheadAttention
from mmseg.registry import MODELS
from mmseg_moase.models.fast_attention import (
    EfficientMultiheadAttentionNoWeights, skip_attention_weights)

MIT_B0 = dict(type='MixVisionTransformer', in_channels=3, embed_dims=32,
              num_stages=4, num_layers=[2, 2, 2, 2], num_heads=[1, 2, 5, 8],
              patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1],
              out_indices=(0, 1, 2, 3), mlp_ratio=4, qkv_bias=True,
              drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)


def backbone_pair(cfg=MIT_B0):
    torch.manual_seed(0)
    ref = MODELS.build(dict(cfg)).eval()
    fast = copy.deepcopy(ref)
    assert skip_attention_weights(fast) == 8  # 2 blocks x 4 stages
    return ref, fast


def test_outputs_and_gradients_equal_stock_attention():
    ref, fast = backbone_pair()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    outs_ref, outs_fast = ref(x), fast(x)
    for a, b in zip(outs_ref, outs_fast):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    sum(o.square().mean() for o in outs_ref).backward()
    sum(o.square().mean() for o in outs_fast).backward()
    grads_fast = dict(fast.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(grads_fast[name].grad, p.grad, rtol=1e-4,
                                   atol=1e-5, msg=name)


def test_switched_layers_skip_the_weight_softmax(monkeypatch):
    """The stock layer runs the explicit softmax of the score map; the switched
    one does not (this test fails if the switch stops taking effect)."""
    ref, fast = backbone_pair()
    calls = []
    real = F.softmax

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, 'softmax', counting)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref(x)
        assert len(calls) == 8
        calls.clear()
        fast(x)
    assert calls == []


def test_switch_keeps_state_dict_and_survives_copies():
    ref, fast = backbone_pair()
    assert list(fast.state_dict()) == list(ref.state_dict())
    fast.load_state_dict(ref.state_dict(), strict=True)
    assert skip_attention_weights(fast) == 0  # already switched
    copied = copy.deepcopy(fast)  # e.g. an EMA teacher or CoTTA's anchor
    kinds = {type(m) for m in copied.modules()
             if isinstance(m, EfficientMultiheadAttention)}
    assert kinds == {EfficientMultiheadAttentionNoWeights}


def test_moase_backbone_attention_is_switched():
    cfg = dict(MIT_B0, type='MixVisionTransformerMoASE')
    ref, fast = backbone_pair(cfg)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for a, b in zip(ref(x), fast(x)):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
