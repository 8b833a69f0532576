"""Distributed CTTA: process group start, gradient averaging, consistency checks.

Every helper is a no-op (or returns at once) in a single process, so the
single-process code path stays exactly what it was.
"""
import datetime
import hashlib
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from mmengine.dist import all_gather_object, get_dist_info
from torch import Tensor

#: Gradients are averaged in flat buckets of at most this many bytes.
GRAD_BUCKET_BYTES = 32 << 20


def world_size() -> int:
    """Number of processes (1 without an initialised process group)."""
    return get_dist_info()[1]


def is_distributed() -> bool:
    """Whether more than one process runs the stream."""
    return world_size() > 1


# ------------------------------------------------------------------ start-up
def configure_dist(cfg) -> None:
    """Make an mmengine config runnable by ``--launcher pytorch`` on any device.

    With CUDA nothing changes: mmengine starts the process group with the
    config's ``env_cfg.dist_cfg`` (NCCL in mmseg's runtime), sets the device from
    ``LOCAL_RANK`` and wraps the model in ``MMDistributedDataParallel`` on that
    device. Without CUDA the backend becomes ``gloo`` (NCCL needs GPUs) and the
    wrapper gets no ``device_ids`` (DDP refuses device ids for a CPU module),
    unless the config sets its own ``model_wrapper_cfg``.

    Args:
        cfg (mmengine.Config): Modified in place.
    """
    if torch.cuda.is_available():
        return
    env_cfg = dict(cfg.get('env_cfg') or {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                                     device_ids=None, broadcast_buffers=False)


def init_dist_cpu(launcher: str, dist_cfg: Optional[dict] = None) -> None:
    """Start the gloo process group where mmengine's ``init_dist`` cannot.

    mmengine 0.10.7's ``init_dist('pytorch')`` calls
    ``torch.cuda.set_device(LOCAL_RANK)``, which fails on a CPU-only torch. On
    CPU this starts the group from torchrun's environment (``env://``) before
    the Runner is built (the Runner then finds it started and keeps it). With
    CUDA, or when a group exists, it does nothing: mmengine starts it.

    Args:
        launcher (str): ``'none'`` or ``'pytorch'`` (torchrun) on CPU.
        dist_cfg (dict, optional): ``env_cfg.dist_cfg``; its ``timeout`` (s) is
            used.

    Raises:
        ValueError: another launcher (slurm, mpi) on a machine without CUDA.
    """
    if launcher == 'none' or torch.cuda.is_available() or \
            (dist.is_available() and dist.is_initialized()):
        return
    if launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher} without CUDA is not supported; '
                         'on CPU start the processes with torchrun (--launcher '
                         'pytorch, tools/dist_test_ctta.sh).')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if key not in os.environ:
            raise RuntimeError(f'--launcher pytorch needs ${key}, which torchrun '
                               'sets: start the run with tools/dist_test_ctta.sh '
                               'or torchrun.')
    kwargs = {}
    timeout = (dist_cfg or {}).get('timeout')
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    dist.init_process_group(backend='gloo', **kwargs)


# ---------------------------------------------------------------- gradients
class AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the backward pass sums the gradients too.

    With every rank's loss summed into one objective J, ``y = sum_r x_r`` on
    every rank gives ``dJ/dx_r = sum_r' dJ/dy_r'``. (``torch.distributed.nn``
    has the same function, deprecated in torch 2.13.)
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def end_distributed() -> None:
    """Leave the process group together: a barrier, then destroy it.

    A process that exits with the group alive tears gloo's threads down in
    the interpreter's shutdown, while the other rank may still be talking to
    it; under load that aborted finished runs (``terminate called without an
    active exception``, exit -6) after every rank had written its results.
    No-op without a process group.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """``AllReduceSum`` (differentiable) in a process group, else ``tensor``."""
    return AllReduceSum.apply(tensor) if is_distributed() else tensor


def _buckets(params: Sequence[Tensor], limit: int) -> List[List[int]]:
    """Indices of ``params`` in consecutive same-dtype groups of <= limit bytes."""
    groups: List[List[int]] = []
    size, dtype = 0, None
    for i, p in enumerate(params):
        nbytes = p.numel() * p.element_size()
        if not groups or p.dtype != dtype or size + nbytes > limit:
            groups.append([])
            size, dtype = 0, p.dtype
        groups[-1].append(i)
        size += nbytes
    return groups


@torch.no_grad()
def average_gradients(params: Sequence[Tensor], contribute: bool = True,
                      loss_finite: bool = True,
                      bucket_bytes: int = GRAD_BUCKET_BYTES) -> bool:
    """Replace every rank's ``p.grad`` by the mean of the ranks' gradients.

    The gradients are flattened into buckets (one ``all_reduce`` each) and
    divided by the world size; a rank with ``contribute=False`` (a stand-in
    batch) sends zeros. A parameter has a gradient afterwards if it had one on
    any contributing rank (zeros stand in for a missing one), and none
    otherwise, as in one process (Adam skips parameters whose ``grad`` is None).
    One small ``all_reduce`` first exchanges which parameters have gradients
    and whether a loss was not finite.

    Args:
        params (Sequence[Tensor]): The trainable parameters, in the same order on
            every rank.
        contribute (bool): Whether this rank's gradients count.
        loss_finite (bool): Whether this rank's loss was finite.
        bucket_bytes (int): Bucket size limit.

    Returns:
        bool: True if every contributing rank's loss was finite.
    """
    world = world_size()
    if world == 1 or not params:
        return loss_finite
    device = params[0].device
    header = torch.tensor(
        [float(contribute and p.grad is not None) for p in params] +
        [float(contribute and not loss_finite)], device=device)
    dist.all_reduce(header)
    has_grad = (header[:-1] > 0).tolist()
    finite = bool(header[-1] == 0)
    for bucket in _buckets(params, bucket_bytes):
        flat = torch.cat([
            params[i].grad.reshape(-1)
            if contribute and params[i].grad is not None else
            params[i].new_zeros(params[i].numel()) for i in bucket])
        dist.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for i in bucket:
            p = params[i]
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p) if has_grad[i] \
                else None
            offset += n
    return finite


# ------------------------------------------------------------ consistency
def _tensor_hash(t: Tensor) -> Tensor:
    """Two int64 hashes of the bits of ``t``, computed on its device."""
    x = t.detach().reshape(-1)
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    if x.is_floating_point() or x.is_complex():
        x = x.view({1: torch.uint8, 2: torch.int16, 4: torch.int32,
                    8: torch.int64}[x.element_size()])
    x = x.to(torch.int64)
    pos = torch.arange(1, x.numel() + 1, device=x.device, dtype=torch.int64)
    return torch.stack([x.sum(), (x * (pos % 65521)).sum()]).cpu()


def _tensors(obj: Any) -> Iterable[Tensor]:
    """Every tensor inside nested dicts/lists/tuples, in a fixed order."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k in obj:
            yield from _tensors(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def state_fingerprint(state: Any) -> str:
    """A digest of the bits of every tensor in ``state`` (and of its shapes)."""
    h = hashlib.sha1()
    for t in _tensors(state):
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(_tensor_hash(t).numpy().tobytes())
    return h.hexdigest()


def rng_fingerprint() -> str:
    """A digest of torch's (CPU and current CUDA device), numpy's and Python's
    random states."""
    import random
    h = hashlib.sha1(torch.get_rng_state().numpy().tobytes())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        h.update(torch.cuda.get_rng_state().numpy().tobytes())
    h.update(repr(np.random.get_state()[1].tolist()).encode())
    h.update(repr(random.getstate()).encode())
    return h.hexdigest()


def check_same_on_all_ranks(fingerprints: Dict[str, str], when: str) -> None:
    """Raise if any rank's fingerprints differ from rank 0's.

    Args:
        fingerprints (dict): ``name -> digest`` of this rank.
        when (str): For the message, e.g. ``'after pass 2'``.

    Raises:
        RuntimeError: naming what differs and on which ranks.
    """
    if not is_distributed():
        return
    gathered = all_gather_object(fingerprints)
    differ = {name: [r for r, fp in enumerate(gathered) if fp[name] != digest]
              for name, digest in gathered[0].items()}
    differ = {k: v for k, v in differ.items() if v}
    if differ:
        what = '; '.join(f'{k} on rank(s) {v}' for k, v in differ.items())
        raise RuntimeError(
            f'distributed CTTA ranks diverged {when}: {what} differ from rank 0. '
            'Every rank must start from the same weights and random seed '
            '(randomness.diff_rank_seed must be False), and every update must be '
            'the same on all ranks (a layer updating a parameter or buffer from '
            "its rank's data alone, unsynchronised, makes them differ).")


def rank_errors(error: Optional[BaseException]) -> List[Tuple[int, str]]:
    """``(rank, message)`` of every rank that met an error (called by all ranks).

    Every rank calls it at the same point of the stream: one ``all_reduce`` of
    a flag when all is well, plus one ``all_gather_object`` of the messages when
    a rank failed. So an error on one rank (a corrupt image, a bad label)
    becomes known to all of them, and none waits in a collective for a rank
    that has stopped. In one process: ``[(0, message)]`` or ``[]``.

    Args:
        error (BaseException, optional): This rank's error, if any.
    """
    def text(e):
        return f'{type(e).__name__}: {e}'

    if not is_distributed():
        return [] if error is None else [(0, text(error))]
    device = torch.device('cuda', torch.cuda.current_device()) \
        if dist.get_backend() == 'nccl' else torch.device('cpu')
    flag = torch.tensor([0.0 if error is None else 1.0], device=device)
    dist.all_reduce(flag)
    if flag.item() == 0:
        return []
    messages = all_gather_object(None if error is None else text(error))
    return [(r, m) for r, m in enumerate(messages) if m is not None]


def raise_rank_errors(error: Optional[BaseException],
                      failures: Sequence[Tuple[int, str]], what: str) -> None:
    """Raise this rank's own error, or one naming the ranks that failed.

    Args:
        error (BaseException, optional): This rank's error, if any.
        failures (Sequence): :func:`rank_errors`'s answer.
        what (str): Where in the stream, for the other ranks' message.
    """
    if error is not None:
        raise error
    if failures:
        text = '; '.join(f'rank {r}: {m}' for r, m in failures)
        raise RuntimeError(f'distributed CTTA stopped {what} because another '
                           f'rank failed: {text}')
