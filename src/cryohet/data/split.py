"""Deterministic train/validation splits of particle rows."""

from __future__ import annotations

import numpy as np

__all__ = ["train_val_split"]


def train_val_split(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split rows ``0..n-1`` into (train, validation), each sorted, int64.

    The same ``n``, ``val_fraction`` and ``seed`` always give the same split (numpy
    ``default_rng(seed)``); ``round(n * val_fraction)`` rows go to validation, at least
    one when ``val_fraction > 0`` and ``n > 1``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)
