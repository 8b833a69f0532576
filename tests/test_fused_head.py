"""The fuse-before-resize SegFormer heads against the concatenating ones.

References: mmseg's own ``SegformerHead`` (for ``FusedSegformerHead``) and
``SegformerOriginalHead(fuse_before_resize=False)``, which test_checkpoint_convert
checks against a copy of the NVlabs head. Same state dict, same inputs; logits,
every parameter gradient and the BatchNorm running statistics must agree up to
float rounding (rtol 1e-5, atol 1e-5 on logits of magnitude ~1-5).
"""
import copy

import pytest
import torch

from mmcv.cnn import ConvModule

from mmseg.registry import MODELS
from mmseg_moase.models.decode_heads.fused_segformer_head import check_fusable

WIDTHS = [32, 64, 160, 256]  # MiT-B0


def head_pair(kind: str, align_corners: bool):
    common = dict(in_channels=WIDTHS, in_index=[0, 1, 2, 3], channels=64,
                  dropout_ratio=0.0, num_classes=7, align_corners=align_corners,
                  norm_cfg=dict(type='BN', requires_grad=True))
    torch.manual_seed(0)
    if kind == 'mmseg':
        ref = MODELS.build(dict(type='SegformerHead', **common))
        fused = MODELS.build(dict(type='FusedSegformerHead', **common))
    else:
        ref = MODELS.build(dict(type='SegformerOriginalHead', **common))
        fused = MODELS.build(dict(type='SegformerOriginalHead',
                                  fuse_before_resize=True, **common))
    # Random BN affine/statistics so that a wrong block order cannot hide.
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    fused.load_state_dict(ref.state_dict(), strict=True)
    return ref, fused


def features(batch: int = 2, h: int = 24, w: int = 40):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, c, -(-h // s), -(-w // s), generator=g)
            for c, s in zip(WIDTHS, (1, 2, 4, 8))]


@pytest.mark.parametrize('kind', ['mmseg', 'original'])
@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('train', [False, True])
def test_fused_head_matches_concatenating_head(kind, align_corners, train):
    ref, fused = head_pair(kind, align_corners)
    ref.train(train)
    fused.train(train)
    feats = features()  # odd sizes: stage 4 is 3x5, upsampled to 24x40
    feats_ref = [f.clone().requires_grad_() for f in feats]
    feats_fused = [f.clone().requires_grad_() for f in feats]
    out_ref = ref(feats_ref)
    out_fused = fused(feats_fused)
    assert out_fused.shape == out_ref.shape == (2, 7, 24, 40)
    torch.testing.assert_close(out_fused, out_ref, rtol=1e-5, atol=1e-5)
    weight = torch.randn(out_ref.shape, generator=torch.Generator().manual_seed(2))
    (out_ref * weight).sum().backward()
    (out_fused * weight).sum().backward()
    for (name, p_ref), p_fused in zip(ref.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p_fused.grad, p_ref.grad, rtol=1e-4, atol=1e-4,
                                   msg=lambda m, n=name: f'{n}: {m}')
    for f_ref, f_fused in zip(feats_ref, feats_fused):
        torch.testing.assert_close(f_fused.grad, f_ref.grad, rtol=1e-4, atol=1e-4)
    for (name, b_ref), b_fused in zip(ref.named_buffers(), fused.buffers()):
        torch.testing.assert_close(b_fused, b_ref, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize('kind', ['mmseg', 'original'])
def test_fused_head_builds_no_concatenation(kind, monkeypatch):
    """The point of the reordering: nothing is concatenated at stage-1 size."""
    _, fused = head_pair(kind, False)
    fused.eval()

    def no_cat(*args, **kwargs):
        raise AssertionError('torch.cat called in the fused head')

    monkeypatch.setattr(torch, 'cat', no_cat)
    with torch.no_grad():
        fused(features())


def test_fused_head_off_is_mmseg_bit_for_bit():
    ref, _ = head_pair('mmseg', False)
    off = MODELS.build(dict(type='FusedSegformerHead', fuse_before_resize=False,
                            in_channels=WIDTHS, in_index=[0, 1, 2, 3],
                            channels=64, dropout_ratio=0.0, num_classes=7,
                            norm_cfg=dict(type='BN', requires_grad=True)))
    off.load_state_dict(ref.state_dict())
    ref.eval()
    off.eval()
    feats = features()
    with torch.no_grad():
        assert torch.equal(off(feats), ref(feats))


def test_fused_head_refuses_a_fuse_layer_it_cannot_reorder():
    cfg = dict(type='SegformerOriginalHead', fuse_before_resize=True,
               in_channels=WIDTHS, in_index=[0, 1, 2, 3], channels=64,
               num_classes=7, norm_cfg=dict(type='BN', requires_grad=True))
    assert MODELS.build(copy.deepcopy(cfg)).fuse_before_resize
    with pytest.raises(ValueError, match='SegformerOriginalHead: '
                       'fuse_before_resize=True needs'):
        MODELS.build(dict(cfg, conv_cfg=dict(type='Conv2dAdaptivePadding')))
    pre_norm = ConvModule(8, 4, 1, norm_cfg=dict(type='BN'),
                          order=('norm', 'conv', 'act'))
    with pytest.raises(ValueError, match="order \\('norm', 'conv', 'act'\\)"):
        check_fusable(pre_norm, 'X')
    check_fusable(ConvModule(8, 4, 1, norm_cfg=dict(type='BN')), 'X')


def test_nvlabs_fused_head_folds_the_linear_projections():
    """With fuse_before_resize the bare linear_c{i} are folded into the fuse
    convolution: no channels-wide embedding is computed (their forward never
    runs), and the logits still match the original order (checked above)."""
    _, fused = head_pair('original', False)
    calls = []
    for proj in fused.linear_embeds:
        proj.register_forward_hook(lambda *args: calls.append(1))
    fused.eval()
    with torch.no_grad():
        fused(features())
    assert calls == []
