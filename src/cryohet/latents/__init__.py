"""Per-image latent tables: one row per particle, optimised row by row, outside any
DistributedDataParallel module."""

from .table import LatentTable

__all__ = ["LatentTable"]
