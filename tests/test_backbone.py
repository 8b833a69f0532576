"""MiT with MoASE against mmseg's stock MixVisionTransformer and SegFormer."""
import copy

import pytest
import torch
from mmengine.config import Config

from mmseg.models.backbones import MixVisionTransformer
from mmseg.registry import MODELS
from mmseg_moase.models.backbones import (MixVisionTransformerMoASE,
                                          MoASEEncoderLayer)

from conftest import (TINY_MIT, config_path, randomize_adapters,
                      segformer_pair)


def _pair(**moase_kw):
    stock = MixVisionTransformer(**TINY_MIT)
    stock.init_weights()
    ours = MixVisionTransformerMoASE(**TINY_MIT, **moase_kw)
    ours.init_weights()
    result = ours.load_state_dict(stock.state_dict(), strict=False)
    return stock.eval(), ours.eval(), result


def test_stock_checkpoint_loads_with_only_adapter_keys_missing():
    _, ours, result = _pair()
    assert result.unexpected_keys == []
    assert result.missing_keys, 'adapters should be missing from a stock file'
    assert all('.adapter.' in k for k in result.missing_keys)
    n_blocks = sum(TINY_MIT['num_layers'])
    assert len(ours.adapters()) == n_blocks
    # Every stock key keeps its name.
    stock_keys = set(MixVisionTransformer(**TINY_MIT).state_dict())
    assert stock_keys <= set(ours.state_dict())


def test_fresh_adapters_equal_stock_backbone_every_stride_non_square():
    stock, ours, _ = _pair()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs_stock, outs_ours = stock(x), ours(x)
    assert [o.shape[-2:] for o in outs_ours] == [(16, 24), (8, 12), (4, 6),
                                                 (2, 3)]
    for a, b in zip(outs_stock, outs_ours):
        assert (a - b).abs().max() <= 1e-6


def test_trained_adapters_change_the_output():
    stock, ours, _ = _pair()
    randomize_adapters(ours)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (stock(x)[-1] - ours(x)[-1]).abs().max() > 1e-3


def test_stage_switch_and_per_stage_bottleneck():
    ours = MixVisionTransformerMoASE(
        **TINY_MIT, moase_stages=[1, 3], moase_bottlenecks=[None, 4, None, 32])
    adapters = ours.adapters()
    assert [n for n, _ in adapters] == [
        'layers.1.1.0', 'layers.1.1.1', 'layers.3.1.0']
    assert [a.bottleneck for _, a in adapters] == [4, 4, 32]
    assert not isinstance(ours.layers[0][1][0], MoASEEncoderLayer)


def test_stock_arguments_keep_working():
    kw = dict(TINY_MIT, drop_path_rate=0.1, with_cp=True, out_indices=(1, 3),
              norm_cfg=dict(type='LN', eps=1e-5), act_cfg=dict(type='GELU'))
    ours = MixVisionTransformerMoASE(**kw).train()
    outs = ours(torch.randn(1, 3, 32, 32, requires_grad=True))
    assert len(outs) == 2
    outs[-1].sum().backward()


@pytest.mark.parametrize('kw, option', [
    (dict(moase_stages=[4]), 'moase_stages'),
    (dict(moase_stages=[-1]), 'moase_stages'),
    (dict(moase_bottlenecks=[8, 8]), 'moase_bottlenecks'),
    (dict(moase_cfg=dict(num_experts=3, sdd_ratios=[0.25, 0.5])), 'sdd_ratios'),
])
def test_bad_backbone_options(kw, option):
    with pytest.raises(ValueError, match=option):
        MixVisionTransformerMoASE(**TINY_MIT, **kw)


def _segformer_pair(cfg_file):
    return segformer_pair(cfg_file, ('moase_cfg', 'moase_stages', 'moase_bottlenecks'))


def test_segformer_b0_config_with_fresh_adapters_gives_identical_logits():
    stock, ours = _segformer_pair(
        config_path('_base_', 'models', 'segformer_mit-b0_moase.py'))
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = stock._forward(x), ours._forward(x)
    assert a.shape == (1, 19, 16, 32)
    assert (a - b).abs().max() <= 1e-6


def test_segformer_b5_config_builds_with_52_adapters_under_5_percent():
    cfg = Config.fromfile(
        config_path('_base_', 'models', 'segformer_mit-b5_moase.py'))
    backbone = MODELS.build(cfg.model.backbone)
    assert len(backbone.adapters()) == 3 + 6 + 40 + 3
    counts = backbone.adapter_parameter_count()
    assert counts['adapters'] / counts['backbone'] <= 0.05
    assert cfg.model.backbone.init_cfg is None
