"""Numeric precision of a CTTA step: float32, or bfloat16 autocast.

``'bf16'`` runs :meth:`BaseCTTAMethod.step` (the teacher's and the student's
forwards, the loss and its backward) under ``torch.autocast(dtype=bfloat16)``:
matmuls and convolutions in bfloat16, softmax, losses and normalisation where
PyTorch's autocast lists keep them in float32. Parameters, gradients, optimiser
state, the EMA teacher update and stochastic restore stay float32 (they run
outside the step or are not autocast ops). Meant for GPUs with bfloat16 units
(A100, H100); on a CPU without them it is emulated and slower.
"""
import contextlib
from typing import ContextManager

import torch

from .options import check_choice

PRECISIONS = ('fp32', 'bf16')


def step_precision(precision: str, device_type: str) -> ContextManager:
    """The context a CTTA step runs in for ``precision`` on ``device_type``.

    Raises:
        ValueError: Unknown ``precision``.
    """
    check_choice('CTTA', 'precision', precision, PRECISIONS)
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
