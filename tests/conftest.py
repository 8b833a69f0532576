import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import mmseg_moase  # noqa: E402,F401  (registers the plugin)
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
