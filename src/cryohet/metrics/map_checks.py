"""Checks of a reconstructed map that need no reference: its radial density profile and
the sign of its density (a map built with the wrong contrast sign goes mostly negative).

Volumes are ``(D, D, D)`` arrays with the box centre at index ``D // 2``; radii are in voxels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["radial_profile", "skewness", "is_hollow"]


def radial_profile(volume: np.ndarray) -> np.ndarray:
    """Mean density per integer radius (voxels) from the box centre."""
    d = volume.shape[0]
    c = np.arange(d) - d // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2).round().astype(int)
    sums = np.bincount(r.ravel(), weights=volume.ravel())
    counts = np.bincount(r.ravel())
    return sums / np.maximum(counts, 1)


def skewness(volume: np.ndarray) -> float:
    """Skewness of the voxel values: strongly positive for a map of bright protein on a flat
    background (measured +13 to +18 on simulated maps, their own and reconstructed), negative
    for the same map with the wrong contrast sign."""
    v = np.asarray(volume, dtype=np.float64).ravel()
    d = v - v.mean()
    sd = d.std()
    return float((d**3).mean() / sd**3) if sd > 0 else 0.0


def is_hollow(volume: np.ndarray) -> bool:
    """The signature of a reconstruction with the wrong contrast sign: the density goes mostly
    negative (negative skewness), which users see as a thin bright shell around a dark core.
    (A negative core alone is not enough: a real complex with a central cavity, band-limited,
    has one too.)"""
    return skewness(volume) < 0
