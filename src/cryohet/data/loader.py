"""Batched reads of a :class:`~cryohet.data.dataset.ParticleDataset`.

Reading one image at a time from a memory-mapped stack costs one Python call, one
page-fault burst and one tensor per image; reading a batch costs one slice (or one
sorted fancy index) per stack. :class:`SortedBatchSampler` yields whole batches of row
indices; :class:`BatchedParticleLoader` turns them into :class:`ParticleBatch` objects, optionally in
DataLoader worker processes.

Shuffling modes:

* ``"random"``: a fresh permutation every epoch; each batch is then sorted in storage
  order (the batch's *content* is random, only its order is sorted), so reads within a
  batch move forward through the file;
* ``"chunks"``: the storage order is cut into contiguous batches whose *order* is
  shuffled each epoch: every batch is one sequential read (fastest on slow disks), at
  the price of fixed batch contents.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from .batch import ParticleBatch
from .dataset import ParticleDataset

__all__ = ["SortedBatchSampler", "BatchedParticleLoader"]

ShuffleMode = Literal["random", "chunks"]


class SortedBatchSampler(Sampler):
    """Yields lists of row indices, one list per batch.

    Args:
        storage_order: rows sorted by position on disk (``dataset.storage_order()``).
        batch_size: rows per batch.
        shuffle: shuffle between epochs (see module docstring for ``mode``).
        seed: base seed; the epoch's permutation uses ``seed + epoch``.
        drop_last: drop a final batch smaller than ``batch_size``.
    """

    def __init__(
        self,
        storage_order: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = False,
        mode: ShuffleMode = "random",
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if mode not in ("random", "chunks"):
            raise ValueError(f"unknown shuffle mode {mode!r}")
        self.order = np.asarray(storage_order, dtype=np.int64)
        self.rank = np.empty_like(self.order)
        self.rank[self.order] = np.arange(len(self.order))
        self.batch_size = int(batch_size)
        self.shuffle, self.mode, self.seed, self.drop_last = shuffle, mode, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of this epoch (deterministic given seed and epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, b = len(self.order), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches (arrays of rows)."""
        n, b = len(self.order), self.batch_size
        rng = np.random.default_rng(self.seed + self.epoch)
        if not self.shuffle:
            rows = np.arange(n)
            out = [rows[i : i + b] for i in range(0, n, b)]
        elif self.mode == "random":
            perm = rng.permutation(n)
            out = [perm[i : i + b] for i in range(0, n, b)]
            out = [batch[np.argsort(self.rank[batch], kind="stable")] for batch in out]
        else:
            chunks = [self.order[i : i + b] for i in range(0, n, b)]
            out = [chunks[j] for j in rng.permutation(len(chunks))]
        if self.drop_last:
            out = [batch for batch in out if len(batch) == b]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches():
            yield batch.tolist()


class _BatchView(Dataset):
    """Maps a list of rows to a batch dict (what DataLoader workers call)."""

    def __init__(self, dataset: ParticleDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, rows: list[int]) -> ParticleBatch:
        return self.dataset.get_batch(rows)


def _no_collate(batch):
    return batch


class BatchedParticleLoader:
    """Iterate over a :class:`ParticleDataset` in batch dicts, reading each batch in one go.

    Args:
        dataset: the particle dataset.
        batch_size: images per batch.
        shuffle, mode, seed, drop_last: see :class:`SortedBatchSampler`.
        num_workers: DataLoader worker processes (0 reads in the calling process); each
            worker opens its own memory maps.
        pin_memory: pin batches for faster host-to-GPU copies.
        prefetch_factor: batches prefetched per worker.

    Call :meth:`set_epoch` before each epoch for a new (deterministic) shuffle.
    """

    def __init__(
        self,
        dataset: ParticleDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        mode: ShuffleMode = "random",
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.sampler = SortedBatchSampler(
            dataset.storage_order(), batch_size, shuffle=shuffle, mode=mode, seed=seed, drop_last=drop_last
        )
        kwargs = {}
        if num_workers > 0:
            kwargs["prefetch_factor"] = prefetch_factor or 2
            kwargs["persistent_workers"] = False
        self._loader = DataLoader(
            _BatchView(dataset),
            sampler=self.sampler,
            batch_size=None,
            collate_fn=_no_collate,
            num_workers=num_workers,
            pin_memory=pin_memory,
            **kwargs,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[ParticleBatch]:
        return iter(self._loader)
