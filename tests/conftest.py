import os
import sys
from typing import Dict

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mmseg_moase  # noqa: E402,F401  (registers the plugin)
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

# Registry look-ups outside a Runner (datasets, transforms) resolve in mmseg.
init_default_scope('mmseg')

# Tiny MiT: stage widths 8/16/40/64, so default bottlenecks are all 16.
TINY_MIT = dict(
    in_channels=3,
    embed_dims=8,
    num_stages=4,
    num_layers=[1, 2, 1, 1],
    num_heads=[1, 2, 5, 8],
    patch_sizes=[7, 3, 3, 3],
    sr_ratios=[8, 4, 2, 1],
    out_indices=(0, 1, 2, 3),
    mlp_ratio=4,
    qkv_bias=True,
    drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.0)


@pytest.fixture(autouse=True, scope='session')
def _fast_runs():
    """Test speed only: one intra-op thread (the tiny model gains nothing from
    more, and on a busy 2-core machine a second spinning thread slows it down
    ~100-fold) and each config's ``pretty_text`` formatted once (mmengine's
    Runner asks for it four times; yapf takes seconds each time)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    fmt = Config.pretty_text.fget
    cache: Dict[str, str] = {}

    def pretty_text(cfg: Config) -> str:
        key = repr(cfg.to_dict())
        if key not in cache:
            cache[key] = fmt(cfg)
        return cache[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Config, 'pretty_text', property(pretty_text))
        yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def config_path(*parts: str) -> str:
    return os.path.join(ROOT, 'configs', *parts)


def randomize_adapters(model: torch.nn.Module, std: float = 0.1) -> None:
    """Give every expert non-zero up projections and biases (a 'trained' adapter)."""
    from mmseg_moase.models.adapters.moase import ExpertBank
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ExpertBank):
                m.up_weight.normal_(0, std)
                m.up_bias.normal_(0, std)
                m.down_bias.normal_(0, std)


def segformer_pair(cfg_file: str, adapter_keys):
    """``(stock, ours)``: the config's segformer with adapters and the same
    model with a stock MiT (the ``adapter_keys`` backbone options removed),
    the stock weights loaded into ours (only ``.adapter.`` keys may be
    missing). Both in eval mode."""
    import copy
    from mmengine.config import Config
    from mmseg.registry import MODELS
    cfg = Config.fromfile(cfg_file)
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    stock_cfg = copy.deepcopy(cfg.model)
    stock_cfg.backbone.type = 'MixVisionTransformer'
    for k in adapter_keys:
        stock_cfg.backbone.pop(k)
    stock = MODELS.build(stock_cfg)
    stock.init_weights()
    ours = MODELS.build(cfg.model)
    result = ours.load_state_dict(stock.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all('.adapter.' in k
                                       for k in result.missing_keys)
    return stock.eval(), ours.eval()
