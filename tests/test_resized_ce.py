"""Banded cross-entropy of upsampled logits against mmseg's resize + loss.

Reference: ``mmseg.models.utils.resize`` to the label size followed by mmseg's
``CrossEntropyLoss`` (what ``BaseDecodeHead.loss_by_feat`` computes). The loss
must agree to rtol 1e-6 and the logits' gradient to rtol 1e-5 / atol 1e-9
(gradients ~1e-4): only the summation order differs.
"""
import pytest
import torch

from mmseg.models.losses import CrossEntropyLoss
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg_moase.methods.base import decode_ce_loss
from mmseg_moase.models.losses import resized_ce
from mmseg_moase.models.losses.resized_ce import bandable, banded_resized_ce


def reference(logits, label, term, align_corners):
    up = resize(logits, size=label.shape[-2:], mode='bilinear',
                align_corners=align_corners, warning=False)
    return term(up, label, ignore_index=255)


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('avg_non_ignore', [False, True])
@pytest.mark.parametrize('low,high,band', [
    ((12, 20), (96, 160), None),       # ratio 8, one band
    ((13, 17), (50, 70), 3 * 7 * 70),  # ratio not an integer, 3-row bands
    ((9, 11), (40, 44), 1),            # one row per band
])
def test_banded_equals_resize_then_cross_entropy(align_corners, avg_non_ignore,
                                                 low, high, band):
    g = torch.Generator().manual_seed(0)
    term = CrossEntropyLoss(loss_weight=0.7, avg_non_ignore=avg_non_ignore)
    logits = (torch.randn(2, 7, *low, generator=g) * 3).requires_grad_()
    label = torch.randint(0, 7, (2, *high), generator=g)
    label[0, :5] = 255
    label[1, :, -3:] = 255
    ref = reference(logits, label, term, align_corners)
    grad_ref, = torch.autograd.grad(ref, logits)
    out = banded_resized_ce(logits, label, term, 255, align_corners, band)
    grad, = torch.autograd.grad(out, logits)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-9)


def test_banded_keeps_no_label_size_map_for_the_backward():
    """What autograd keeps from the forward is the low-resolution logits and
    indices: nothing of label size x classes (checkpointed bands)."""
    term = CrossEntropyLoss()
    logits = torch.randn(1, 19, 16, 32).requires_grad_()
    label = torch.randint(0, 19, (1, 128, 256))
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        banded_resized_ce(logits, label, term, 255, False, 19 * 256 * 8)
    assert sizes and max(sizes) <= logits.numel()
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        reference(logits, label, term, False)
    assert max(sizes) >= 19 * 128 * 256  # the plain path keeps the full map


def test_bandable_only_for_plain_softmax_cross_entropy():
    assert bandable(CrossEntropyLoss(), None)
    assert not bandable(CrossEntropyLoss(), object())  # a pixel sampler
    assert not bandable(CrossEntropyLoss(class_weight=[1.0, 2.0]), None)
    assert not bandable(CrossEntropyLoss(use_sigmoid=True), None)
    assert not bandable(MODELS.build(dict(type='DiceLoss')), None)


def _segmentor(loss_decode):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(type='MixVisionTransformer', embed_dims=8,
                      num_layers=[1, 1, 1, 1], num_heads=[1, 2, 5, 8]),
        decode_head=dict(type='SegformerHead', in_channels=[8, 16, 40, 64],
                         in_index=[0, 1, 2, 3], channels=16, num_classes=5,
                         norm_cfg=dict(type='BN'), loss_decode=loss_decode))).eval()


@pytest.mark.parametrize('loss_decode,expect_banded', [
    (dict(type='CrossEntropyLoss', loss_weight=1.0), True),
    ([dict(type='CrossEntropyLoss', loss_weight=0.4),
      dict(type='CrossEntropyLoss', loss_weight=0.6, avg_non_ignore=True)],
     True),
    (dict(type='CrossEntropyLoss', class_weight=[1.0, 2.0, 1.0, 1.0, 0.5]),
     False),
])
def test_decode_ce_loss_banded_equals_plain(monkeypatch, loss_decode,
                                            expect_banded):
    seg = _segmentor(loss_decode)
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 3, 64, 96, generator=g)
    labels = [torch.randint(0, 5, (128, 192), generator=g) for _ in range(2)]
    if expect_banded:  # mmseg's class-weight average cannot index 255
        labels[0][:4] = 255
    calls = []
    real = resized_ce.banded_resized_ce

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr('mmseg_moase.methods.base.banded_resized_ce', counting)
    plain = decode_ce_loss(seg, inputs, labels)  # default: mmseg's full size
    grads_plain = torch.autograd.grad(plain, list(seg.parameters()))
    assert calls == []
    banded = decode_ce_loss(seg, inputs, labels, banded=True)
    grads = torch.autograd.grad(banded, list(seg.parameters()))
    assert bool(calls) == expect_banded
    torch.testing.assert_close(banded, plain, rtol=1e-6, atol=0)
    for a, b in zip(grads, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
