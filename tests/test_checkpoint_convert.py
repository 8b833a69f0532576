"""NVlabs SegFormer checkpoints -> mmseg 1.x: converter, original head, CLI.

The "original" model below is a small, faithful re-implementation of the NVlabs
MiT and SegFormer head (same module and parameter names, same computation, same
LayerNorm epsilons), used to fabricate tiny original-layout checkpoints with random
weights. Nothing here downloads anything.
"""
import math
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

import mmseg_moase  # noqa: F401  (registers the plugin)
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from torch import Tensor

import mmseg_moase.models.decode_heads  # noqa: F401  (registers the head)
from mmseg.models.backbones.mit import MixVisionTransformer
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg_moase.models.checkpoint_convert import (
    apply_nvlabs_layernorm_eps, check_converted_fits_model,
    convert_nvlabs_segformer, detect_nvlabs_layout, mit_arch, mit_variant)
from mmseg_moase.models.checkpoints.loading import load_source_checkpoint

init_default_scope('mmseg')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Tiny MiT: stage widths 8/16/40/64 (embed 8, heads 1/2/5/8), depths [1, 2, 1, 1].
WIDTHS = [8, 16, 40, 64]
HEADS = [1, 2, 5, 8]
DEPTHS = [1, 2, 1, 1]
SR = [8, 4, 2, 1]
EMBED = 16  # the head's embedding dim (decoder_params.embed_dim)
NUM_CLASSES = 5
ORIG_CHANNELS = 12  # the original config's `channels`: the unused conv_seg's input
# Non-square and not a multiple of 32, so every stage has odd sizes.
IMG_HW = (70, 100)
TOL = 1e-5

# Most fabricated files have 5 unnamed classes; the warning is tested once.
pytestmark = pytest.mark.filterwarnings(
    'ignore:the checkpoint has no class names:UserWarning')


# --------------------------------------------------------------------------
# The original (NVlabs) SegFormer, re-implemented with its names
# --------------------------------------------------------------------------
class DWConv(nn.Module):

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, N, C = x.shape
        x = x.transpose(1, 2).view(B, C, H, W)
        return self.dwconv(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), H, W)))


class Attention(nn.Module):

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)  # eps 1e-5, as in the original

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, N, C = x.shape
        h = self.num_heads
        q = self.q(x).reshape(B, N, h, C // h).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x_ = x.permute(0, 2, 1).reshape(B, C, H, W)
            x_ = self.sr(x_).reshape(B, C, -1).permute(0, 2, 1)
            x_ = self.norm(x_)
        else:
            x_ = x
        kv = self.kv(x_).reshape(B, -1, 2, h, C // h).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        x = x + self.attn(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x), H, W)


class OverlapPatchEmbed(nn.Module):

    def __init__(self, patch_size: int, stride: int, in_chans: int,
                 embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size,
                              stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)  # eps 1e-5, as in the original

    def forward(self, x: Tensor) -> Tuple[Tensor, int, int]:
        x = self.proj(x)
        _, _, H, W = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), H, W


class OrigMiT(nn.Module):

    def __init__(self, widths: Sequence[int], heads: Sequence[int],
                 depths: Sequence[int], sr_ratios: Sequence[int]) -> None:
        super().__init__()
        in_ch = 3
        for i in range(4):
            self.add_module(f'patch_embed{i + 1}', OverlapPatchEmbed(
                7 if i == 0 else 3, 4 if i == 0 else 2, in_ch, widths[i]))
            self.add_module(f'block{i + 1}', nn.ModuleList(
                Block(widths[i], heads[i], sr_ratios[i])
                for _ in range(depths[i])))
            self.add_module(f'norm{i + 1}', nn.LayerNorm(widths[i], eps=1e-6))
            in_ch = widths[i]

    def forward(self, x: Tensor) -> List[Tensor]:
        B = x.shape[0]
        outs = []
        for i in range(1, 5):
            x, H, W = getattr(self, f'patch_embed{i}')(x)
            for blk in getattr(self, f'block{i}'):
                x = blk(x, H, W)
            x = getattr(self, f'norm{i}')(x)
            x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


class MLP(nn.Module):

    def __init__(self, input_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.flatten(2).transpose(1, 2))


class LinearFuse(nn.Module):
    """mmcv ConvModule(conv no bias, SyncBN 'bn', ReLU), names as in the file."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class OrigHead(nn.Module):

    def __init__(self, in_channels: Sequence[int], embed: int, num_classes: int,
                 channels: int = ORIG_CHANNELS) -> None:
        super().__init__()
        # BaseDecodeHead's conv_seg (from `channels`), never used by SegFormerHead.
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        for i in range(4):
            self.add_module(f'linear_c{i + 1}', MLP(in_channels[i], embed))
        self.linear_fuse = LinearFuse(4 * embed, embed)
        self.linear_pred = nn.Conv2d(embed, num_classes, kernel_size=1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        c1, c2, c3, c4 = feats
        n = c4.shape[0]

        def embed(i: int, c: Tensor) -> Tensor:
            e = getattr(self, f'linear_c{i}')(c).permute(0, 2, 1).reshape(
                n, -1, c.shape[2], c.shape[3])
            if i > 1:
                e = F.interpolate(e, size=c1.shape[2:], mode='bilinear',
                                  align_corners=False)
            return e

        _c = self.linear_fuse(torch.cat(
            [embed(4, c4), embed(3, c3), embed(2, c2), embed(1, c1)], dim=1))
        return self.linear_pred(self.dropout(_c))


class OrigSegFormer(nn.Module):

    def __init__(self, widths: Sequence[int] = WIDTHS,
                 heads: Sequence[int] = HEADS,
                 depths: Sequence[int] = DEPTHS, embed: int = EMBED,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.backbone = OrigMiT(widths, heads, depths, SR)
        self.decode_head = OrigHead(widths, embed, num_classes)

    def forward(self, img: Tensor) -> Tensor:
        """Logits at the image size (mmseg 0.x ``encode_decode``)."""
        out = self.decode_head(self.backbone(img))
        return F.interpolate(out, size=img.shape[2:], mode='bilinear',
                             align_corners=False)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with O(1) activations; random BN statistics; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.copy_(
                        0.2 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(
                        0.5 + torch.rand(m.running_var.shape, generator=g))
                    m.num_batches_tracked.fill_(1000)
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) /
                               math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def original_ckpt(num_classes: int = NUM_CLASSES, meta: Dict = None,
                  seed: int = 0) -> Tuple[OrigSegFormer, Dict]:
    """A randomised original model and its checkpoint (NVlabs layout)."""
    model = randomize(OrigSegFormer(num_classes=num_classes), seed)
    ckpt = dict(state_dict=dict(model.state_dict()))
    if meta is not None:
        ckpt['meta'] = meta
    return model, ckpt


def head_cfg(num_classes: int = NUM_CLASSES, **kwargs) -> Dict:
    cfg = dict(type='SegformerOriginalHead', in_channels=WIDTHS,
               in_index=[0, 1, 2, 3], channels=EMBED, dropout_ratio=0.1,
               num_classes=num_classes,
               norm_cfg=dict(type='BN', requires_grad=True),
               align_corners=False)
    cfg.update(kwargs)
    return cfg


def backbone_cfg(moase: bool = False) -> Dict:
    cfg = dict(type='MixVisionTransformerMoASE' if moase else
               'MixVisionTransformer', in_channels=3, embed_dims=8,
               num_stages=4, num_layers=DEPTHS, num_heads=HEADS,
               patch_sizes=[7, 3, 3, 3], sr_ratios=SR, out_indices=(0, 1, 2, 3),
               mlp_ratio=4, qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0,
               drop_path_rate=0.0)
    if moase:
        cfg.update(moase_cfg=dict(num_experts=2), moase_stages=(0, 1, 2, 3))
    return cfg


def segmentor_cfg(moase: bool = False, num_classes: int = NUM_CLASSES,
                  test_cfg: Dict = None) -> ConfigDict:
    return ConfigDict(
        type='EncoderDecoder',
        backbone=backbone_cfg(moase),
        decode_head=head_cfg(num_classes),
        train_cfg=dict(),
        test_cfg=test_cfg or dict(mode='whole'))


def build_loaded(converted: Dict, **kwargs) -> nn.Module:
    model = MODELS.build(segmentor_cfg(**kwargs))
    model.load_state_dict(converted['state_dict'], strict=not kwargs.get('moase'))
    apply_nvlabs_layernorm_eps(model)
    return model.eval()


def image(batch: int = 2) -> Tensor:
    return torch.randn(batch, 3, *IMG_HW, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------
# Backbone and segmentor equality
# --------------------------------------------------------------------------
def test_detect_layout_and_variant():
    _, ckpt = original_ckpt()
    assert detect_nvlabs_layout(ckpt['state_dict'])
    assert detect_nvlabs_layout(ckpt)
    converted = convert_nvlabs_segformer(ckpt)
    assert not detect_nvlabs_layout(converted['state_dict'])
    assert mit_variant(ckpt['state_dict']) == 'custom'
    # Both layouts give the same shape.
    assert mit_arch(ckpt) == mit_arch(converted['state_dict'])
    assert mit_arch(ckpt).widths == tuple(WIDTHS)
    assert mit_arch(ckpt).depths == tuple(DEPTHS)


@pytest.mark.parametrize('variant', ['B0', 'B1', 'B2', 'B3', 'B4', 'B5'])
def test_mit_variant_names(variant):
    from mmseg_moase.models.checkpoint_convert import MIT_VARIANTS
    widths, depths = MIT_VARIANTS[variant]
    # Shapes are all the detection reads; tiny stand-in tensors are enough.
    nvlabs, mmseg = {}, {}
    for i, (w, d) in enumerate(zip(widths, depths)):
        nvlabs[f'backbone.patch_embed{i + 1}.proj.weight'] = torch.zeros(w, 1, 1, 1)
        mmseg[f'backbone.layers.{i}.0.projection.weight'] = torch.zeros(w, 1, 1, 1)
        for j in range(d):
            nvlabs[f'backbone.block{i + 1}.{j}.attn.q.weight'] = torch.zeros(1)
            mmseg[f'backbone.layers.{i}.1.{j}.norm1.weight'] = torch.zeros(1)
    assert mit_variant(nvlabs) == variant
    assert mit_variant(mmseg) == variant
    assert f'MiT-{variant}' in mit_arch(nvlabs).describe()


def test_backbone_features_match_stock_mit():
    orig, ckpt = original_ckpt()
    converted = convert_nvlabs_segformer(ckpt)
    backbone = MixVisionTransformer(**{
        k: v for k, v in backbone_cfg().items() if k != 'type'})
    bb_state = {k[len('backbone.'):]: v for k, v in
                converted['state_dict'].items() if k.startswith('backbone.')}
    backbone.load_state_dict(bb_state, strict=True)
    backbone.eval()
    img = image()
    with torch.no_grad():
        ref = orig.backbone(img)
        stock = backbone(img)  # mmseg's LayerNorm eps everywhere (1e-6)
        assert apply_nvlabs_layernorm_eps(backbone) == 4 + sum(
            d for d, s in zip(DEPTHS, SR) if s > 1)
        exact = backbone(img)
    assert [tuple(f.shape) for f in ref] == [(2, 8, 18, 25), (2, 16, 9, 13),
                                             (2, 40, 5, 7), (2, 64, 3, 4)]
    for stage, (r, e, s) in enumerate(zip(ref, exact, stock)):
        diff = (r - e).abs().max().item()
        print(f'stage {stage + 1}: max |orig - converted| = {diff:.2e} '
              f'(stock eps: {(r - s).abs().max().item():.2e})')
        assert diff <= TOL, f'stage {stage + 1}: {diff}'


def test_layernorm_eps_gap():
    """Without the eps fix the stock MiT is close to, not equal to, the original.

    Quantifies the only difference between the original MiT and mmseg's with
    converted weights: LayerNorm eps 1e-6 instead of 1e-5 in patch embeddings and
    spatial-reduction norms.
    """
    orig, ckpt = original_ckpt()
    converted = convert_nvlabs_segformer(ckpt)
    model = MODELS.build(segmentor_cfg())
    model.load_state_dict(converted['state_dict'], strict=True)
    model.eval()
    img = image()
    with torch.no_grad():
        ref = orig(img)
        out = model.encode_decode(img, _metas(2, IMG_HW))
        gap = (ref - out).abs().max().item()
    rel = gap / ref.abs().max().item()
    print(f'stock-eps logits gap: {gap:.2e} (relative {rel:.2e})')
    assert rel < 1e-3


def _metas(n: int, hw: Tuple[int, int]) -> List[Dict]:
    return [dict(ori_shape=hw, img_shape=hw, pad_shape=hw,
                 padding_size=[0, 0, 0, 0]) for _ in range(n)]


def _samples(n: int, hw: Tuple[int, int], gt: bool = False) -> List:
    out = []
    for i in range(n):
        ds = SegDataSample(metainfo=_metas(1, hw)[0])
        if gt:
            g = torch.Generator().manual_seed(10 + i)
            label = torch.randint(0, NUM_CLASSES, (1, *hw), generator=g)
            label[:, :5, :5] = 255
            ds.gt_sem_seg = PixelData(data=label)
        out.append(ds)
    return out


def test_segmentor_logits_match_original():
    orig, ckpt = original_ckpt()
    converted = convert_nvlabs_segformer(ckpt)
    model = build_loaded(converted)
    img = image()
    with torch.no_grad():
        ref_low = orig.decode_head(orig.backbone(img))
        ref = orig(img)
        low = model._forward(img)
        logits = model.encode_decode(img, _metas(2, IMG_HW))
        preds = model.predict(img, _samples(2, IMG_HW))
    d_low = (ref_low - low).abs().max().item()
    d = (ref - logits).abs().max().item()
    d_pred = max((ref[i] - p.seg_logits.data).abs().max().item()
                 for i, p in enumerate(preds))
    print(f'head logits diff {d_low:.2e}, image logits diff {d:.2e}, '
          f'predict diff {d_pred:.2e}')
    assert low.shape == (2, NUM_CLASSES, 18, 25)
    assert d_low <= TOL and d <= TOL and d_pred <= TOL
    for i, p in enumerate(preds):
        assert torch.equal(p.pred_sem_seg.data[0], ref[i].argmax(0))


def test_slide_inference_matches_original():
    orig, ckpt = original_ckpt()
    converted = convert_nvlabs_segformer(ckpt)
    img = image(1)
    # One window larger than the image: the same as whole inference.
    model = build_loaded(converted, test_cfg=dict(
        mode='slide', crop_size=(128, 128), stride=(96, 96)))
    with torch.no_grad():
        out = model.predict(img, _samples(1, IMG_HW))[0].seg_logits.data
        assert (out - orig(img)[0]).abs().max().item() <= TOL
    # Several overlapping windows: the average of the original's window logits.
    crop, stride = (48, 64), (32, 48)
    model = build_loaded(converted, test_cfg=dict(
        mode='slide', crop_size=crop, stride=stride))
    H, W = IMG_HW
    acc = torch.zeros(NUM_CLASSES, H, W)
    cnt = torch.zeros(1, H, W)
    with torch.no_grad():
        out = model.predict(img, _samples(1, IMG_HW))[0].seg_logits.data
        for y in range(0, max(H - crop[0] + stride[0] - 1, 0) // stride[0] + 1):
            for x in range(0, max(W - crop[1] + stride[1] - 1, 0) // stride[1] + 1):
                y2, x2 = min(y * stride[0] + crop[0], H), min(
                    x * stride[1] + crop[1], W)
                y1, x1 = max(y2 - crop[0], 0), max(x2 - crop[1], 0)
                acc[:, y1:y2, x1:x2] += orig(img[:, :, y1:y2, x1:x2])[0]
                cnt[:, y1:y2, x1:x2] += 1
    assert int(cnt.max()) > 1
    assert (out - acc / cnt).abs().max().item() <= TOL


def test_head_loss_and_gradients():
    _, ckpt = original_ckpt()
    model = build_loaded(convert_nvlabs_segformer(ckpt))
    model.train()
    losses = model.loss(image(), _samples(2, IMG_HW, gt=True))
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg'}
    assert torch.isfinite(losses['decode.loss_ce'])
    losses['decode.loss_ce'].backward()
    head = model.decode_head
    for p in (head.linear_c1.proj.weight, head.linear_c4.proj.weight,
              head.linear_fuse.conv.weight, head.linear_fuse.bn.weight,
              head.conv_seg.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_head_structure_and_options():
    head = MODELS.build(head_cfg(align_corners=True,
                                 norm_cfg=dict(type='SyncBN',
                                               requires_grad=True)))
    assert head.linear_fuse.conv.bias is None
    assert type(head.linear_fuse.bn).__name__ == 'SyncBatchNorm'
    assert head.align_corners
    assert isinstance(head.linear_c1.proj, nn.Linear)
    assert tuple(head.conv_seg.weight.shape) == (NUM_CLASSES, EMBED, 1, 1)
    keys = set(head.state_dict())
    assert not any(k.startswith('linear_pred') for k in keys)
    with pytest.raises(ValueError, match='norm_cfg'):
        MODELS.build(head_cfg(norm_cfg=None))
    with pytest.raises(ValueError, match='input_transform'):
        MODELS.build(head_cfg(input_transform='resize_concat'))


# --------------------------------------------------------------------------
# MoASE backbone, meta, checkpoint variants
# --------------------------------------------------------------------------
def test_converted_file_loads_into_moase_model(tmp_path):
    classes = tuple(f'c{i}' for i in range(NUM_CLASSES))
    orig, ckpt = original_ckpt(meta=dict(CLASSES=classes))
    converted = convert_nvlabs_segformer(ckpt)
    path = str(tmp_path / 'converted.pth')
    torch.save(converted, path)
    model = MODELS.build(segmentor_cfg(moase=True))
    missing = check_converted_fits_model(converted['state_dict'], model)
    assert missing and all('.adapter.' in k for k in missing)
    meta = load_source_checkpoint(model, path)  # the CTTA runner's loader
    assert meta['dataset_meta']['classes'] == classes
    result = model.load_state_dict(converted['state_dict'], strict=False)
    assert not result.unexpected_keys
    assert sorted(result.missing_keys) == sorted(missing)
    # Converting against the built model checks the same thing.
    convert_nvlabs_segformer(ckpt, target=model)
    # Fresh (zero-output) adapters: the original's logits.
    apply_nvlabs_layernorm_eps(model)
    model.eval()
    img = image(1)
    with torch.no_grad():
        d = (model.encode_decode(img, _metas(1, IMG_HW)) -
             orig(img)).abs().max().item()
    print(f'MoASE model (fresh adapters) logits diff {d:.2e}')
    assert d <= TOL


def test_meta_kept_and_converted():
    classes = tuple(f'c{i}' for i in range(NUM_CLASSES))
    palette = [[i, 2 * i, 3 * i] for i in range(NUM_CLASSES)]
    _, ckpt = original_ckpt(meta=dict(CLASSES=classes, PALETTE=palette,
                                      config='old config text', iter=160000))
    meta = convert_nvlabs_segformer(ckpt)['meta']
    assert meta['dataset_meta'] == dict(classes=classes, palette=palette)
    assert 'CLASSES' not in meta and 'PALETTE' not in meta
    assert meta['config'] == 'old config text' and meta['iter'] == 160000
    assert meta['mit_variant'] == 'custom'


def test_cityscapes_meta_added_when_absent():
    from mmseg.datasets import CityscapesDataset
    _, ckpt = original_ckpt(num_classes=19)
    meta = convert_nvlabs_segformer(ckpt)['meta']
    info = CityscapesDataset.METAINFO
    assert meta['dataset_meta']['classes'] == tuple(info['classes'])
    assert meta['dataset_meta']['palette'] == [list(p) for p in info['palette']]
    # Not 19 classes and no names: no made-up names, a warning.
    _, ckpt = original_ckpt()
    with pytest.warns(UserWarning, match='no class names'):
        meta = convert_nvlabs_segformer(ckpt)['meta']
    assert 'dataset_meta' not in meta


def test_module_prefix_and_top_level_weights():
    _, ckpt = original_ckpt()
    ref = convert_nvlabs_segformer(ckpt)['state_dict']
    variants = [
        dict(state_dict={'module.' + k: v for k, v in ckpt['state_dict'].items()}),
        dict(ckpt['state_dict']),
        {'module.' + k: v for k, v in ckpt['state_dict'].items()},
    ]
    for v in variants:
        out = convert_nvlabs_segformer(v)['state_dict']
        assert list(out) == list(ref)
        assert all(torch.equal(out[k], ref[k]) for k in ref)
    # The original's unused conv_seg is dropped; linear_pred becomes conv_seg.
    assert torch.equal(ref['decode_head.conv_seg.weight'],
                       ckpt['state_dict']['decode_head.linear_pred.weight'])
    assert not any('linear_pred' in k for k in ref)
    w = ref['backbone.layers.1.1.0.attn.attn.in_proj_weight']
    assert tuple(w.shape) == (3 * WIDTHS[1], WIDTHS[1])
    assert tuple(ref['backbone.layers.1.1.0.ffn.layers.0.weight'].shape) == (
        4 * WIDTHS[1], WIDTHS[1], 1, 1)


# --------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------
def test_refuses_unknown_layout():
    with pytest.raises(ValueError, match=r"backbone\.patch_embed1\.proj\.weight"):
        convert_nvlabs_segformer(dict(state_dict={'foo.weight': torch.zeros(2)}))
    _, ckpt = original_ckpt()
    converted = convert_nvlabs_segformer(ckpt)
    with pytest.raises(ValueError, match='already in the mmseg 1.x layout'):
        convert_nvlabs_segformer(converted)
    backbone_only = {k[len('backbone.'):]: v
                     for k, v in ckpt['state_dict'].items()
                     if k.startswith('backbone.')}
    with pytest.raises(ValueError, match='ImageNet-pretrained'):
        convert_nvlabs_segformer(backbone_only)
    extra = dict(ckpt['state_dict'], **{'auxiliary_head.conv.weight':
                                        torch.zeros(1)})
    with pytest.raises(ValueError, match='auxiliary_head.conv.weight'):
        convert_nvlabs_segformer(extra)
    incomplete = {k: v for k, v in ckpt['state_dict'].items()
                  if 'block2.1.mlp.fc2' not in k}
    with pytest.raises(ValueError, match=r'block2\.1.*mlp\.fc2'):
        convert_nvlabs_segformer(incomplete)
    with pytest.raises(ValueError, match='no weights'):
        convert_nvlabs_segformer(dict(meta=dict(a=1)))


def _b0_ckpt() -> Dict:
    model = OrigSegFormer(widths=[32, 64, 160, 256], depths=[2, 2, 2, 2],
                          embed=256, num_classes=19)
    return dict(state_dict=model.state_dict())


def test_refuses_variant_mismatch():
    b0 = _b0_ckpt()
    assert mit_variant(b0) == 'B0'
    cfg = dict(model=segmentor_cfg())
    with pytest.raises(ValueError, match='looks like MiT-B0') as err:
        convert_nvlabs_segformer(b0, target=cfg)
    assert 'non-standard MiT' in str(err.value)
    with pytest.raises(ValueError, match='looks like MiT-B0'):
        convert_nvlabs_segformer(b0, target=MODELS.build(segmentor_cfg()))
    # A B5 config (mmseg's shipped defaults merged in) against the B0 file.
    b5 = dict(model=dict(backbone=dict(type='MixVisionTransformer', embed_dims=64,
                                       num_heads=[1, 2, 5, 8],
                                       num_layers=[3, 6, 40, 3]),
                         decode_head=head_cfg(19)))
    with pytest.raises(ValueError, match=r'looks like MiT-B0.*is MiT-B5'):
        convert_nvlabs_segformer(b0, target=b5)


def test_refuses_head_mismatch():
    _, ckpt = original_ckpt()
    cfg = segmentor_cfg()
    cfg['decode_head'] = dict(head_cfg(), type='SegformerHead')
    with pytest.raises(ValueError, match="only fit 'SegformerOriginalHead'"):
        convert_nvlabs_segformer(ckpt, target=cfg)
    cfg['decode_head'] = head_cfg(channels=32)
    with pytest.raises(ValueError, match='embeds to 16 channels.*is 32'):
        convert_nvlabs_segformer(ckpt, target=cfg)


def test_refuses_class_count_mismatch():
    _, ckpt = original_ckpt()
    with pytest.raises(ValueError, match=r'has 5 classes, expected 19'):
        convert_nvlabs_segformer(ckpt, num_classes=19)
    with pytest.raises(ValueError, match=r'has 5 classes.*num_classes is 19'):
        convert_nvlabs_segformer(ckpt, target=dict(model=segmentor_cfg(
            num_classes=19)))
    model = MODELS.build(segmentor_cfg(moase=True, num_classes=19))
    with pytest.raises(ValueError, match=r'has 5 classes, the model 19'):
        convert_nvlabs_segformer(ckpt, target=model)
    _, bad_meta = original_ckpt(meta=dict(CLASSES=('a', 'b')))
    with pytest.raises(ValueError, match=r'lists 2 classes.*has 5'):
        convert_nvlabs_segformer(bad_meta)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
CLI = osp.join(ROOT, 'tools', 'convert_segformer_checkpoint.py')


def _write_cfg(path: str, num_classes: int = NUM_CLASSES) -> None:
    model = segmentor_cfg(moase=True, num_classes=num_classes)
    with open(path, 'w') as f:
        f.write("custom_imports = dict(imports=['mmseg_moase', "
                "'mmseg_moase.models.decode_heads'], "
                'allow_failed_imports=False)\n')
        f.write("default_scope = 'mmseg'\n")
        f.write(f'model = {model!r}\n')


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.run([sys.executable, CLI, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_round_trip(tmp_path):
    classes = tuple(f'c{i}' for i in range(NUM_CLASSES))
    _, ckpt = original_ckpt(meta=dict(CLASSES=classes,
                                      PALETTE=[[0, 0, i] for i in range(5)]))
    src, dst = str(tmp_path / 'orig.pth'), str(tmp_path / 'out' / 'conv.pth')
    # A DataParallel-prefixed file, as some mirrors ship.
    torch.save(dict(state_dict={'module.' + k: v for k, v in
                                ckpt['state_dict'].items()},
                    meta=ckpt['meta']), src)
    cfg = str(tmp_path / 'tiny_cfg.py')
    _write_cfg(cfg)
    proc = _run_cli(src, dst, '--config', cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'variant: custom' in proc.stdout
    assert f'classes: {NUM_CLASSES}' in proc.stdout
    assert 'loads into' in proc.stdout
    saved = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}
    ref = convert_nvlabs_segformer(ckpt)
    assert list(saved['state_dict']) == list(ref['state_dict'])
    assert all(torch.equal(saved['state_dict'][k], v)
               for k, v in ref['state_dict'].items())
    assert saved['meta']['dataset_meta']['classes'] == classes

    # A config with another class count is refused, with both numbers.
    bad = str(tmp_path / 'bad_cfg.py')
    _write_cfg(bad, num_classes=19)
    proc = _run_cli(src, str(tmp_path / 'never.pth'), '--config', bad)
    assert proc.returncode != 0
    assert 'has 5 classes' in proc.stderr and '19' in proc.stderr
    assert not osp.exists(tmp_path / 'never.pth')
