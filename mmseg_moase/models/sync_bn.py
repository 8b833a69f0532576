"""BatchNorm whose test-batch statistics are those of the global batch of all ranks.

Distributed CTTA needs this for the methods that normalise with test-batch
statistics (TENT, NormStat: SegFormer's head BatchNorm in training mode): with W
processes of b images, each rank's BatchNorm must see the statistics of the W*b
images one process would normalise together. ``torch.nn.SyncBatchNorm`` does
that on GPUs only (torch 2.13 raises "SyncBatchNorm expected input tensor to be
on GPU or XPU ..." for CPU tensors), and it cannot leave a stand-in batch (the
image a rank with no share of a stream's last step processes so that it takes
part in the collectives) out of the statistics. :class:`CTTASyncBatchNorm`
works on any device and backend, and is what :func:`convert_ctta_sync_bn` puts
in place of every BatchNorm when the stream runs on several processes.
"""
from contextlib import contextmanager
from typing import Iterator, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.dist import all_reduce_sum, is_distributed

_STAND_IN = [False]


@contextmanager
def stand_in_batch() -> Iterator[None]:
    """Inside, :class:`CTTASyncBatchNorm` layers count this rank's batch for
    nothing in the global statistics (they still take part in the collectives)."""
    previous = _STAND_IN[0]
    _STAND_IN[0] = True
    try:
        yield
    finally:
        _STAND_IN[0] = previous


def _rank_sums(x: Tensor, dims: Sequence[int]) -> Tuple[Tensor, Tensor, float]:
    """``x.sum(dims)`` over every rank's ``x``, the number of elements each
    entry sums (detached) and this rank's weight (0 under :func:`stand_in_batch`):
    one differentiable all-reduce, whose backward sums the ranks' gradients."""
    keep = 0.0 if _STAND_IN[0] else 1.0
    total = x.sum(dims)
    count = x.new_tensor([keep * (x.numel() // max(total.numel(), 1))])
    sums = all_reduce_sum(torch.cat([total.flatten() * keep, count]))
    return sums[:-1].view(total.shape), sums[-1].detach(), keep


def global_mean(x: Tensor, dims: Sequence[int]) -> Tensor:
    """``x.mean(dims)`` over the concatenated batch of every rank (as
    :class:`CTTASyncBatchNorm`'s mean; a stand-in batch adds nothing). Equal
    to ``x.mean(dims)`` in one process."""
    if not is_distributed():
        return x.mean(dims)
    total, n, _ = _rank_sums(x, dims)
    return total / n


class CTTASyncBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of all ranks, on any device and backend.

    In training mode with more than one process the mean and the (biased)
    variance are those of every element of every rank's batch, computed in two
    differentiable all-reduces (sums and the element count, then the sum of
    squared deviations from the global mean), so the output, the gradients and
    the running statistics are those of one BatchNorm over the concatenated
    batch, up to float rounding. Gradients flow through the statistics to every
    rank (the all-reduce's backward pass sums the gradients, as for the sum of
    the ranks' losses). In evaluation mode, or in one process, it is exactly
    ``torch.nn.BatchNorm*d``. Under :func:`stand_in_batch` this rank adds zero
    elements to the statistics. Statistics are computed in float32 for half
    inputs.

    Args:
        num_features (int): Channels C of the (N, C, ...) input.
        eps, momentum, affine, track_running_stats: As ``torch.nn.BatchNorm2d``.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input (got {input.dim()}D '
                             'input)')

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) \
            else input
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        total, n, keep = _rank_sums(x, dims)
        mean = total / n
        centred = x - mean.view(shape)
        var = all_reduce_sum((centred * centred).sum(dims) * keep) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean),
                                        factor)
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var), factor)
        return out.to(input.dtype)


def convert_ctta_sync_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm (``torch.nn.BatchNorm*d``, ``SyncBatchNorm``) in
    ``module`` by :class:`CTTASyncBatchNorm`, in place.

    The new layers hold the old layers' very parameter and buffer tensors (an
    optimiser or a teacher copy made afterwards sees the same state; the state
    dict keys do not change) and keep their training mode and ``requires_grad``.

    Returns:
        nn.Module: ``module``, or its replacement if it is itself a BatchNorm.
    """
    if isinstance(module, _BatchNorm) and \
            not isinstance(module, CTTASyncBatchNorm):
        new = CTTASyncBatchNorm(module.num_features, module.eps, module.momentum,
                                module.affine, module.track_running_stats)
        for name in ('weight', 'bias', 'running_mean', 'running_var',
                     'num_batches_tracked'):
            if getattr(module, name, None) is not None:
                setattr(new, name, getattr(module, name))
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_ctta_sync_bn(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module
