"""A CTTA step on a CUDA device against the same step on the CPU.

Marked ``cuda``: skipped without a device; ``tools/gpu_check.py`` runs them
(``pytest -m cuda``) where one is lent. Same model (MiT-B0, random weights,
the same seed), same fabricated image, built as ``tools/benchmark_ctta.py``
builds them; one step on each device in fp32 with TF32 off. Tolerances: the
scored label maps agree on >= 99% of pixels (random weights leave many pixels
near a tie), the same tensors move, and their elements move the same way on
>= 99% of the elements (Adam's first step is about lr * sign(gradient), so an
element whose gradient is at the rounding floor may flip). bf16 on the device
against fp32 on the device: the label maps agree on >= 97% (as on the CPU,
``tests/test_precision.py``).

``MOASE_TEST_DEVICE=cpu`` runs the same checks with the CPU as the "device"
(the code path, not the device's numbers).
"""
import copy
import os
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from tools.benchmark_ctta import (DEFAULT_CONFIGS, build_bench,  # noqa: E402
                                  expand_variants)
from mmseg_moase.utils.precision import step_precision  # noqa: E402

DEVICE = os.environ.get('MOASE_TEST_DEVICE', 'cuda')
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.startswith('cuda') and
                       not torch.cuda.is_available(),
                       reason='no CUDA device (tools/gpu_check.py runs these '
                       'where one is lent)'),
]
LABELS = ['TENT', 'CoTTA', 'MoASE teacher=cotta', 'MoASE teacher=single']


def _step(label: str, device: str, precision: str = 'fp32'):
    """Scored labels and per-tensor weight updates of one step."""
    variants = {v.label: v for v in
                expand_variants(DEFAULT_CONFIGS['b0'], ['cotta', 'single'])}
    bench = build_bench(variants[label], (64, 128), 1, device)
    seg = bench.method.segmentor
    before = {n: p.detach().clone() for n, p in seg.named_parameters()
              if p.requires_grad}
    torch.manual_seed(0)
    with step_precision(precision, torch.device(device).type):
        out = bench.method.step(copy.deepcopy(bench.batches[0]))
    assert bench.method.skipped_updates == 0
    labels = out[0].pred_sem_seg.data.cpu()
    deltas = {n: (p.detach() - before[n]).cpu()
              for n, p in seg.named_parameters() if n in before}
    return labels, deltas


@pytest.fixture(autouse=True)
def _no_tf32():
    if not torch.cuda.is_available():
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = old


@pytest.mark.parametrize('label', LABELS)
def test_device_step_agrees_with_cpu(label):
    cpu_labels, cpu_deltas = _step(label, 'cpu')
    dev_labels, dev_deltas = _step(label, DEVICE)
    agree = float((cpu_labels == dev_labels).float().mean())
    assert agree >= 0.99, agree
    moved = {n for n, d in cpu_deltas.items() if d.abs().max() > 0}
    assert moved, 'the CPU step moved no weight'
    assert moved == {n for n, d in dev_deltas.items() if d.abs().max() > 0}
    both = torch.cat([((cpu_deltas[n] != 0) & (dev_deltas[n] != 0)).flatten()
                      for n in moved])
    same = torch.cat([(cpu_deltas[n].sign() == dev_deltas[n].sign()).flatten()
                      for n in moved])
    sign_agree = float(same[both].float().mean())
    assert sign_agree >= 0.99, sign_agree


@pytest.mark.parametrize('label', ['CoTTA', 'MoASE teacher=cotta'])
def test_device_bf16_step_agrees_with_fp32(label):
    if DEVICE.startswith('cuda') and not torch.cuda.is_bf16_supported():
        pytest.skip(f'{torch.cuda.get_device_name(DEVICE)} has no bf16')
    fp32, _ = _step(label, DEVICE, 'fp32')
    bf16, _ = _step(label, DEVICE, 'bf16')
    agree = float((fp32 == bf16).float().mean())
    assert agree >= 0.97, agree
