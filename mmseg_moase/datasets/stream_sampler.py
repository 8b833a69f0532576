"""A sampler that walks a dataset in order, optionally from a given position."""
from typing import Iterator, List, Sized, Tuple

from mmengine.dist import get_dist_info
from torch.utils.data import Sampler

from mmseg.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class StreamSampler(Sampler):
    """In-order indices ``start, start+1, ...`` of a CTTA stream pass.

    With W processes and per-process batch b, rank r yields, for every global
    step, its share of the next W*b images: indices ``step*W*b + r*b ... + b-1``.
    So a step of W processes consumes exactly the images one process would with
    batch W*b, in order (not an interleaved shard of the whole dataset).

    The last step of a pass may hold fewer than W*b images: the ranks share them
    in the same order, so some ranks get fewer than b and, with fewer than W*b -
    b + 1 images left, some get none. Such a rank still has to take part in the
    step's collectives (gradient averaging, synchronised BatchNorm), so it
    yields a *stand-in*: the step's first image, which the CTTA loop runs
    through the method with zero weight (no gradient, no BatchNorm statistics)
    and neither scores nor saves. :meth:`step_shares` tells the loop which steps
    those are. Every rank therefore has one batch per global step.

    Args:
        dataset (Sized): The pass's dataset.
        start (int): First image index (for ``--resume``). Must be a multiple of
            W*b. Defaults to 0.
        batch_size (int): Per-process batch size b. Defaults to 1.
        seed: Ignored (present for mmengine's sampler-building interface).
    """

    def __init__(self, dataset: Sized, start: int = 0, batch_size: int = 1,
                 seed=None) -> None:
        self.dataset = dataset
        self.rank, self.world_size = get_dist_info()
        self.batch_size = batch_size
        self.start = start
        self.global_batch = batch_size * self.world_size
        if start % self.global_batch:
            raise ValueError(f'StreamSampler start={start} is not a multiple of '
                             f'the global batch {self.global_batch} '
                             f'({self.world_size} processes x batch '
                             f'{batch_size}): resume with the numbers of '
                             'processes and batch size of the interrupted run')

    def _steps(self) -> Iterator[Tuple[int, int, int, int]]:
        """``(first image of the step, images of the step on all ranks, this
        rank's first image, images on this rank)`` for every global step."""
        n = len(self.dataset)
        for step_start in range(self.start, n, self.global_batch):
            total = min(self.global_batch, n - step_start)
            mine = min(max(total - self.rank * self.batch_size, 0),
                       self.batch_size)
            yield step_start, total, step_start + self.rank * self.batch_size, mine

    def step_shares(self) -> List[Tuple[int, int]]:
        """``(images of the step on all ranks, on this rank)`` for every global
        step; 0 on this rank means its batch of that step is a stand-in."""
        return [(total, mine) for _, total, _, mine in self._steps()]

    def _indices(self) -> Iterator[int]:
        for step_start, _, lo, mine in self._steps():
            if mine:
                yield from range(lo, lo + mine)
            else:  # no share in the last step: a stand-in, see the class doc
                yield step_start

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._indices()))

    def __len__(self) -> int:
        return len(list(self._indices()))
