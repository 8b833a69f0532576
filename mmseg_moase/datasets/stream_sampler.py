"""A sampler that walks a dataset in order, optionally from a given position."""
from typing import Iterator, Sized

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
                             f'the global batch {self.global_batch}')

    def _indices(self):
        n = len(self.dataset)
        for step_start in range(self.start, n, self.global_batch):
            lo = step_start + self.rank * self.batch_size
            yield from range(lo, min(lo + self.batch_size, n))

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._indices()))

    def __len__(self) -> int:
        return len(list(self._indices()))
