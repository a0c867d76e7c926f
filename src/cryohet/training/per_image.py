"""Per-image passes over all particles, split across the ranks of a distributed run.

A pass that computes something for every image (latent initialisation, a latent or pose
search, the outputs of a trained model) runs on :func:`cryohet.training.distributed.shard`
of the rows on each rank, then :func:`gather_rows_into` puts every rank's rows into the
full table on every rank. With one process the shard is every row and the gather a no-op.
"""

from __future__ import annotations

import numpy as np
import torch

from .distributed import all_gather_rows, get_dist, shard

__all__ = ["my_rows", "gather_rows_into"]


def my_rows(n: int) -> np.ndarray:
    """The rows ``0..n-1`` this rank handles (contiguous blocks; all rows with one process)."""
    return shard(n)


def gather_rows_into(table: np.ndarray | torch.Tensor, rows: np.ndarray) -> np.ndarray | torch.Tensor:
    """Fill ``table`` (N, ...) on every rank with every rank's ``table[rows]``; in place, returned.

    Each rank must have computed ``table[rows]`` for its own ``rows`` (from :func:`my_rows`);
    the other rows may hold anything. No-op with one process.
    """
    if not get_dist().enabled:
        return table
    as_numpy = isinstance(table, np.ndarray)
    t = torch.from_numpy(table) if as_numpy else table
    idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    all_idx = all_gather_rows(idx)
    all_val = all_gather_rows(t[idx.to(t.device)].contiguous())
    t[all_idx.to(t.device)] = all_val.to(t.dtype)
    return table
