"""Cartesian 2D shift grids for translation search, with coarse-to-fine refinement.

Shifts are ``(x, y)`` pairs, last axis x then y, in whatever unit the caller uses for
``extent`` and ``step`` (pixels in pose search, Å for RELION origins; the functions do
not convert). A grid is *cell-centred*: ``n`` points per axis split ``[-extent, extent]``
into ``n`` cells of width ``step = 2 * extent / n`` and sit at the cell centres, so an
even ``n`` has no point at 0 and an odd ``n`` does. DRGN-AI's translation search uses
``n = 14`` over ``extent = 20`` px.

Refinement halves the step around given centres: with ``n = 2`` the new points are
the centres of the four half-size sub-cells (``centre +- step / 4``), which nest
exactly inside the parent cell; with ``n = 3`` they are ``centre + {-1, 0, 1} * step / 2``
(the centre itself plus its eight half-step neighbours).
"""

from __future__ import annotations

import numpy as np

__all__ = ["grid_1d", "shift_grid", "refine_shift_grid"]


def grid_1d(extent: float, n: int) -> np.ndarray:
    """``n`` cell-centred points covering ``[-extent, extent]``: ``(i + 1/2) * step - extent``."""
    if n < 1:
        raise ValueError(f"need at least one grid point per axis, got n={n}")
    if extent < 0:
        raise ValueError(f"extent must be >= 0, got {extent}")
    step = 2.0 * float(extent) / n
    return (np.arange(n) + 0.5) * step - float(extent)


def shift_grid(extent: float, n: int, centre: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, float]:
    """Square grid of ``n * n`` shifts ``(x, y)`` around ``centre``; returns ``(points, step)``.

    ``points`` has shape ``(n * n, 2)``, ordered with x fastest (``points[i * n + j]`` has
    y index ``i`` and x index ``j``); ``step = 2 * extent / n``.
    """
    g = grid_1d(extent, n)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=-1) + np.asarray(centre, dtype=np.float64)
    return pts, 2.0 * float(extent) / n


def refine_shift_grid(centres: np.ndarray, step: float, n: int = 2) -> tuple[np.ndarray, float]:
    """Halve the step around each centre: ``n * n`` points per centre.

    ``centres`` (M, 2) -> ``(points (M, n * n, 2), new_step = step / 2)``; the offsets are
    ``(i - (n - 1) / 2) * step / 2`` per axis (``+- step / 4`` for ``n = 2``; ``0, +- step / 2``
    for ``n = 3``), x fastest as in :func:`shift_grid`.
    """
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    new_step = float(step) / 2.0
    off = (np.arange(n) - (n - 1) / 2.0) * new_step
    yy, xx = np.meshgrid(off, off, indexing="ij")
    offsets = np.stack([xx.ravel(), yy.ravel()], axis=-1)
    return c[:, None, :] + offsets[None], new_step
