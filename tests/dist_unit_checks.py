"""Checks of the distributed CTTA building blocks, run on every rank of 2.

    python -m torch.distributed.run --nproc_per_node 2 tests/dist_unit_checks.py

(``tests/dist_ctta_worker.py --unit-checks`` runs them after its stream.) Each
rank compares what it computes with a single-process reference that it
also computes itself (the whole global batch, plain BatchNorm, plain backward):
:class:`CTTASyncBatchNorm` + :meth:`BaseCTTAMethod.update` with the step shares
of :class:`StreamSampler` (a partly filled rank and a stand-in rank included),
the skip of a non-finite loss on one rank, MoASE's ASG keep ratios over the
ranks (inputs whose per-rank K differ), :func:`rank_errors` and
:func:`check_same_on_all_ranks`. Prints ``DIST UNIT OK`` on success; an
AssertionError exits non-zero.
"""
import copy
import os.path as osp
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_moase.datasets.stream_sampler import StreamSampler  # noqa: E402
from mmseg_moase.methods.base import BaseCTTAMethod  # noqa: E402
from mmseg_moase.models.sync_bn import (convert_ctta_sync_bn,  # noqa: E402
                                        stand_in_batch)
from mmseg_moase.utils.dist import (check_same_on_all_ranks,  # noqa: E402
                                    rank_errors)

TOL = dict(rtol=1e-5, atol=1e-6)


def make_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                        nn.ReLU(), nn.Conv2d(4, 5, 1))
    net.train()
    return net


def loss_fn(out: torch.Tensor) -> torch.Tensor:
    """A mean over images of per-image means, as the CTTA losses."""
    return torch.stack([(o.log_softmax(0) * o.softmax(0)).sum(0).mean()
                        for o in out]).mean()


class Method(BaseCTTAMethod):
    pass


def check_step(total: int, batch: int, rank: int) -> None:
    """One adaptation step on ``total`` images, ``batch`` per rank."""
    torch.manual_seed(1)
    images = torch.randn(total, 3, 6, 8) * 2 + 1
    share = StreamSampler(range(total), batch_size=batch).step_shares()
    assert len(share) == 1, share
    n_step, n_local = share[0]
    idx = list(StreamSampler(range(total), batch_size=batch))
    assert n_step == total and len(idx) == max(n_local, 1), (share, idx)

    ref = make_net()  # one process, the whole batch
    opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    ref_out = ref(images)
    loss_fn(ref_out).backward()
    opt.step()

    net = convert_ctta_sync_bn(make_net())
    method = Method(optim_wrapper=dict(
        optimizer=dict(type='SGD', lr=0.5, momentum=0.9)))
    method.setup(net)
    method.set_step_share(n_local, n_step)
    stand_in = n_local == 0
    ctx = stand_in_batch() if stand_in else torch.enable_grad()
    with ctx:
        out = net(images[idx])
        assert method.update(loss_fn(out))
    if not stand_in:
        torch.testing.assert_close(out, ref_out[idx], **TOL)
    for (name, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m: f'{name}: {m}')
    assert not torch.equal(net[0].weight, make_net()[0].weight)


def check_non_finite_on_one_rank(rank: int) -> None:
    net = convert_ctta_sync_bn(make_net())
    before = copy.deepcopy(net.state_dict())
    method = Method(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)))
    method.setup(net)
    method.set_step_share(1, 2)
    out = net(torch.randn(1, 3, 6, 8))
    loss = loss_fn(out) * (float('nan') if rank == 1 else 1.0)
    assert not method.update(loss)
    assert method.skipped_updates == 1
    for k, v in net.state_dict().items():
        if 'running' not in k and 'num_batches' not in k:
            assert torch.equal(v, before[k]), k


def check_asg_keep_ratios(rank: int) -> None:
    """MoASE's ASG keep ratios (a batch mean) with each rank holding one image
    whose gate differs: K per rank would differ; synchronised, every rank's
    adapter output equals one process's on both images (and, where rank 1
    only stands in, one process's on rank 0's image)."""
    from mmseg_moase.models.adapters.moase import MoASEAdapter
    from mmseg_moase.models.sync_bn import global_mean

    torch.manual_seed(4)
    adapter = MoASEAdapter(embed_dims=8, num_experts=2, bottleneck=16,
                           eta=0.5, sdd_ratios=[0.25, 0.25])
    for p in adapter.experts.parameters():  # fresh experts output zero
        nn.init.normal_(p, std=0.5)
    with torch.no_grad():  # the gate follows channel 0's sign
        adapter.asg.weight.zero_()
        adapter.asg.bias.zero_()
        adapter.asg.weight[:, 0] = torch.tensor([10.0, -10.0])
    x = torch.randn(2, 16, 8)
    x[0, :, 0], x[1, :, 0] = 3.0, -3.0
    hw = (4, 4)
    ref = adapter(x, hw)  # one process, both images
    ref0 = adapter(x[:1], hw)  # one process, image 0 alone

    r = adapter.bottleneck

    def k_of(ratios):
        return [int(float(p) * r) for p in ratios]

    local_k = k_of(adapter.keep_ratios(x[rank:rank + 1]))
    global_k = k_of(adapter.keep_ratios(x))
    assert local_k != global_k, (local_k, global_k)  # a case that can fail
    adapter.rank_statistics = True
    out = adapter(x[rank:rank + 1], hw)
    assert k_of(adapter.keep_ratios(x[rank:rank + 1])) == global_k
    torch.testing.assert_close(out, ref[rank:rank + 1], **TOL)
    eps = torch.rand(1, 5, 3)  # the global mean itself, stand-in excluded
    ctx = stand_in_batch() if rank == 1 else torch.no_grad()
    with ctx:
        mean = global_mean(eps, (0, 1))
        out0 = adapter(x[:1] if rank == 0 else torch.randn(1, 16, 8), hw)
    if rank == 0:
        torch.testing.assert_close(mean, eps.mean((0, 1)), **TOL)
        torch.testing.assert_close(out0, ref0, **TOL)


def check_errors_and_sync(rank: int) -> None:
    error = ValueError('boom') if rank == 1 else None
    assert rank_errors(error) == [(1, 'ValueError: boom')]
    assert rank_errors(None) == []
    check_same_on_all_ranks(dict(a='x', b='y'), 'in a test')
    try:
        check_same_on_all_ranks(dict(a='x', b=f'y{rank}'), 'in a test')
    except RuntimeError as e:
        assert 'b on rank(s) [1]' in str(e), e
    else:
        raise AssertionError('diverged ranks not detected')


def run_checks() -> None:
    """All checks, in an initialised process group of 2 ranks."""
    rank = dist.get_rank()
    assert dist.get_world_size() == 2
    for total, batch in ((4, 2), (3, 2), (2, 2), (1, 1), (2, 1)):
        check_step(total, batch, rank)  # (3, 2): 2 + 1; (2, 2), (1, 1): stand-in
    check_non_finite_on_one_rank(rank)
    check_asg_keep_ratios(rank)
    check_errors_and_sync(rank)
    dist.barrier()
    print(f'DIST UNIT OK rank {rank}', flush=True)


if __name__ == '__main__':
    dist.init_process_group('gloo')
    torch.set_num_threads(1)
    run_checks()
    dist.destroy_process_group()
