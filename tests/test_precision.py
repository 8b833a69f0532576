"""bfloat16 autocast of a CTTA step against the float32 step.

Same model (MiT-B0, NVlabs head, random weights), same fabricated image and seed,
built as ``tools/benchmark_ctta.py`` builds them; one step each. Tolerance: the
scored label maps agree on >= 97% of pixels (bfloat16 keeps 8 bits of mantissa;
with random weights many pixels are near ties; observed 98.8-99.3%). Also checked:
the step really runs in bfloat16 (the classifier's output dtype), the
weights and the optimiser stay float32, and (CoTTA, MoASE) the bf16 backward
and update move the same tensors the same way as the fp32 ones.
"""
import copy
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from tools.benchmark_ctta import (DEFAULT_CONFIGS, build_bench,  # noqa: E402
                                  expand_variants)
from mmseg_moase.utils.precision import step_precision  # noqa: E402


@pytest.mark.parametrize('label', ['Source', 'TENT', 'CoTTA',
                                   'MoASE teacher=single'])
def test_bf16_step_agrees_with_fp32(label):
    variants = {v.label: v for v in
                expand_variants(DEFAULT_CONFIGS['b0'], ['single'])}
    labels, dtypes = [], []
    for precision in ('fp32', 'bf16'):
        bench = build_bench(variants[label], (64, 128), 1, 'cpu')
        head = bench.method.segmentor.decode_head
        head.conv_seg.register_forward_hook(
            lambda m, i, o: dtypes.append((precision, o.dtype)))
        torch.manual_seed(0)
        with step_precision(precision, 'cpu'):
            out = bench.method.step(copy.deepcopy(bench.batches[0]))
        labels.append(out[0].pred_sem_seg.data)
        params = list(bench.method.segmentor.parameters())
        assert all(p.dtype == torch.float32 for p in params)
        if bench.method.optim_wrapper is not None:
            state = bench.method.optim_wrapper.optimizer.state
            assert state and all(v.dtype == torch.float32 for s in state.values()
                                 for v in s.values() if torch.is_tensor(v)
                                 and v.is_floating_point())
    assert {d for p, d in dtypes if p == 'fp32'} == {torch.float32}
    assert {d for p, d in dtypes if p == 'bf16'} == {torch.bfloat16}
    agree = (labels[0] == labels[1]).float().mean().item()
    assert agree >= 0.97, agree


@pytest.mark.parametrize('label', ['CoTTA', 'MoASE teacher=single'])
def test_bf16_update_agrees_with_fp32(label):
    """The bf16 step's backward and Adam update, not only its forward: the same
    tensors move as in fp32, and their elements move the same way."""
    variants = {v.label: v for v in
                expand_variants(DEFAULT_CONFIGS['b0'], ['single'])}
    deltas = []
    for precision in ('fp32', 'bf16'):
        bench = build_bench(variants[label], (64, 128), 1, 'cpu')
        seg = bench.method.segmentor
        before = {n: p.detach().clone() for n, p in seg.named_parameters()
                  if p.requires_grad}
        torch.manual_seed(0)
        with step_precision(precision, 'cpu'):
            bench.method.step(copy.deepcopy(bench.batches[0]))
        assert bench.method.skipped_updates == 0
        deltas.append({n: p.detach() - before[n]
                       for n, p in seg.named_parameters() if n in before})
    fp32, bf16 = deltas
    moved = {n for n, d in fp32.items() if d.abs().max() > 0}
    assert len(moved) > 0.5 * len(fp32)  # the step adapts most tensors
    assert moved == {n for n, d in bf16.items() if d.abs().max() > 0}
    # Adam's first step moves each element by about lr * sign(gradient); the
    # signs agree on 99.5% (CoTTA) and 99.2% (MoASE) of the elements.
    both = torch.cat([((fp32[n] != 0) & (bf16[n] != 0)).flatten()
                      for n in moved])
    same = torch.cat([(fp32[n].sign() == bf16[n].sign()).flatten()
                      for n in moved])
    agree = float(same[both].float().mean())
    assert agree >= 0.97, agree
