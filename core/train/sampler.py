"""Deterministic global batches split across ranks.

Each epoch draws one seeded permutation of the dataset and cuts it into global batches
(the last one is topped up with the epoch's first patches, so no patch is skipped and
every rank sees equal batch sizes);
rank r takes rows [r*b, (r+1)*b) of each. The union over ranks of a step's batches is
exactly the single-process batch of the same step, which is what lets a 2-process run
train the same model as a 1-process run.
"""
from __future__ import annotations

from typing import Iterator

import torch


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if global_batch % world:
            raise ValueError(f"batch size {global_batch} must be divisible by the number of processes {world}")
        if n < global_batch:
            raise ValueError(f"{n} samples cannot fill one batch of {global_batch}: lower --batch-size")
        self.n, self.global_batch, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.local = global_batch // world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.global_batch)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator()
        g.manual_seed(self.seed * 7919 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        perm += perm[: len(self) * self.global_batch - self.n]
        for b in range(len(self)):
            start = b * self.global_batch + self.rank * self.local
            yield perm[start : start + self.local]
