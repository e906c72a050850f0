"""Seeded mini-batch order: the same run sees the same batches alone or in a population."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BatchOrder"]


class BatchOrder:
    """Epochs of a fresh random permutation, cut into full batches (the remainder is dropped).

    Parameters
    ----------
    n : int
        Training-set size.
    batch_size : int
        Samples per step; must not exceed ``n``.
    seed : int
        Seeds a private ``torch.Generator``; the global RNG is never touched.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if batch_size > n:
            raise ValueError(
                f"batch_size {batch_size} is larger than the training set ({n} samples); "
                "lower batch_size or raise train_fraction"
            )
        self.n, self.batch_size = n, batch_size
        self.per_epoch = n // batch_size
        self._gen = torch.Generator().manual_seed(int(seed) + 7919)  # offset: decorrelate from init
        self._perm: Tensor = torch.empty(0, dtype=torch.long)
        self._pos = self.per_epoch  # forces a new permutation on the first call

    def next(self) -> Tensor:
        """Indices of the next batch, shape ``(batch_size,)``, on the CPU."""
        if self._pos >= self.per_epoch:
            self._perm = torch.randperm(self.n, generator=self._gen)
            self._pos = 0
        lo = self._pos * self.batch_size
        self._pos += 1
        return self._perm[lo : lo + self.batch_size]

    def epoch(self, step: int) -> float:
        """Epochs completed after ``step`` optimiser steps."""
        return step * self.batch_size / self.n
