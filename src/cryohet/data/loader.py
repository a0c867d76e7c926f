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

Several processes (``torch.distributed``, one per GPU): with ``world_size`` W and a
per-rank ``batch_size`` B, the epoch's order (as above) is cut into *global* batches of
``B * W`` consecutive rows, each global batch is sorted as a single-process batch would
be, and rank ``r`` takes ``np.array_split(global_batch, W)[r]``. So the ranks' local
batches at step ``s``, concatenated in rank order, are exactly the batch a single process
with batch size ``B * W`` reads at step ``s``; every image is read once per epoch over
all ranks (no padding duplicates, no dropped tail unless ``drop_last``); every rank has
the same number of steps. When fewer than W images remain at the last step, some local
batches are EMPTY (zero rows): the caller must still take that step (collectives and DDP
all-reduces must run on every rank), e.g. scale its loss by
:meth:`SortedBatchSampler.global_batch_sizes` rather than by the local size.
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
    """Yields lists of row indices, one list per batch (this rank's share of each step).

    Args:
        storage_order: rows sorted by position on disk (``dataset.storage_order()``).
        batch_size: rows per batch *per rank*; a step reads ``batch_size * world_size``
            rows over all ranks (the global batch).
        shuffle: shuffle between epochs (see module docstring for ``mode``).
        seed: base seed; the epoch's permutation uses ``seed + epoch`` (same on all ranks).
        drop_last: drop global batches smaller than ``batch_size * world_size``.
        rank, world_size: this process's rank and the number of processes (see the module
            docstring); ``0, 1`` is a single process. A local batch may be empty (only at
            the last step, when fewer than ``world_size`` rows are left).
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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if mode not in ("random", "chunks"):
            raise ValueError(f"unknown shuffle mode {mode!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        self.order = np.asarray(storage_order, dtype=np.int64)
        self.position = np.empty_like(self.order)  # position[row]: where row lies in storage order
        self.position[self.order] = np.arange(len(self.order))
        self.batch_size = int(batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.mode, self.seed, self.drop_last = shuffle, mode, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of this epoch (deterministic given seed and epoch)."""
        self.epoch = int(epoch)

    @property
    def global_batch_size(self) -> int:
        """Rows per step over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Steps per epoch (the same on every rank)."""
        n, g = len(self.order), self.global_batch_size
        return n // g if self.drop_last else -(-n // g)

    def global_batches(self) -> list[np.ndarray]:
        """This epoch's global batches (all ranks' rows of each step, in rank order)."""
        n, g = len(self.order), self.global_batch_size
        rng = np.random.default_rng(self.seed + self.epoch)
        if not self.shuffle:
            rows = np.arange(n)
            out = [rows[i : i + g] for i in range(0, n, g)]
        elif self.mode == "random":
            perm = rng.permutation(n)
            out = [perm[i : i + g] for i in range(0, n, g)]
            out = [batch[np.argsort(self.position[batch], kind="stable")] for batch in out]
        else:
            chunks = [self.order[i : i + g] for i in range(0, n, g)]
            out = [chunks[j] for j in rng.permutation(len(chunks))]
        if self.drop_last:
            out = [batch for batch in out if len(batch) == g]
        return out

    def global_batch_sizes(self) -> list[int]:
        """Rows of each step of this epoch over all ranks (to scale a loss without a collective)."""
        return [len(batch) for batch in self.global_batches()]

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches for this rank (arrays of rows; possibly empty at the last step)."""
        if self.world_size == 1:
            return self.global_batches()
        return [np.array_split(batch, self.world_size)[self.rank] for batch in self.global_batches()]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches():
            yield batch.tolist()


class _BatchView(Dataset):
    """Maps a list of rows to a batch dict (what DataLoader workers call)."""

    def __init__(self, dataset: ParticleDataset, row_map: np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.row_map = row_map  # sampler positions -> dataset rows (a loader over a subset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, rows: list[int]) -> ParticleBatch:
        if len(rows) == 0:  # an empty local batch (distributed, last step): same fields, dtypes, trailing shapes
            return self.dataset.get_batch([0]).rows(slice(0, 0))
        if self.row_map is not None:
            rows = self.row_map[np.asarray(rows, dtype=np.int64)]
        return self.dataset.get_batch(rows)


def _no_collate(batch):
    return batch


class BatchedParticleLoader:
    """Iterate over a :class:`ParticleDataset` in :class:`ParticleBatch` es, reading each batch in one go.

    Args:
        dataset: the particle dataset.
        batch_size: images per batch (per rank when ``world_size > 1``).
        shuffle, mode, seed, drop_last, rank, world_size: see :class:`SortedBatchSampler`;
            with ``world_size > 1`` the last batch of a rank may be empty (zero rows, same
            keys and trailing shapes) and must still be stepped.
        num_workers: DataLoader worker processes (0 reads in the calling process); each
            worker opens its own memory maps.
        pin_memory: pin batches for faster host-to-GPU copies.
        prefetch_factor: batches prefetched per worker.
        rows: read only these rows of the dataset (e.g. this rank's share of a per-image
            pass), in storage order; ``batch.index`` stays the dataset row. Default: all.

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
        rank: int = 0,
        world_size: int = 1,
        rows: np.ndarray | None = None,
    ) -> None:
        self.dataset = dataset
        order = dataset.storage_order()
        row_map = None
        if rows is not None:
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            sel = np.asarray(rows, dtype=np.int64)
            row_map = sel[np.argsort(position[sel], kind="stable")]  # the subset in storage order
            order = np.arange(len(row_map))
        self.rows = np.arange(len(dataset)) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
        self.sampler = SortedBatchSampler(
            order,
            batch_size,
            shuffle=shuffle,
            mode=mode,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        kwargs = {}
        if num_workers > 0:
            kwargs["prefetch_factor"] = prefetch_factor or 2
            kwargs["persistent_workers"] = False
        self._loader = DataLoader(
            _BatchView(dataset, row_map),
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

    def global_batch_sizes(self) -> list[int]:
        """Images of each step of the current epoch over all ranks (see :class:`SortedBatchSampler`)."""
        return self.sampler.global_batch_sizes()

    def __iter__(self) -> Iterator[ParticleBatch]:
        return iter(self._loader)

    def endless(self, first_epoch: int = 10_000) -> Iterator[ParticleBatch]:
        """The batches of epoch ``first_epoch``, then of the next one, and so on without end:
        for a phase counted in steps rather than epochs. The default first epoch is far from
        the training epochs' numbers, so its order is none of theirs."""
        epoch = first_epoch
        while True:
            self.set_epoch(epoch)
            yield from self
            epoch += 1
