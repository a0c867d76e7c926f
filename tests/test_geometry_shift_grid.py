"""Cartesian shift grids and their refinement."""

from __future__ import annotations

import numpy as np

from cryohet.geometry.shift_grid import grid_1d, refine_shift_grid, shift_grid


def test_grid_1d_cell_centred_and_symmetric():
    g = grid_1d(20.0, 14)
    assert len(g) == 14
    np.testing.assert_allclose(np.diff(g), 40.0 / 14)
    np.testing.assert_allclose(g, -g[::-1])
    assert g.min() > -20 and g.max() < 20
    assert 0.0 in grid_1d(3.0, 3)


def test_shift_grid_order_and_centre():
    pts, step = shift_grid(2.0, 4, centre=(10.0, -5.0))
    assert pts.shape == (16, 2) and step == 1.0
    np.testing.assert_allclose(pts[:4, 1], pts[0, 1])  # x fastest
    np.testing.assert_allclose(pts[:4, 0], 10.0 + np.array([-1.5, -0.5, 0.5, 1.5]))
    np.testing.assert_allclose(pts.mean(axis=0), (10.0, -5.0))


def test_refine_halves_step_and_nests():
    pts, step = shift_grid(20.0, 14)
    fine, fstep = refine_shift_grid(pts, step, n=2)
    assert fine.shape == (196, 4, 2) and fstep == step / 2
    # children of all cells = the grid with twice the points at half the step
    ref, rstep = shift_grid(20.0, 28)
    assert rstep == fstep
    children = np.unique(fine.reshape(-1, 2).round(9), axis=0)
    np.testing.assert_allclose(children, np.unique(ref.round(9), axis=0))
    # each child stays in its parent's cell
    assert np.abs(fine - pts[:, None]).max() <= step / 2
    three, _ = refine_shift_grid(np.array([[1.0, 2.0]]), 4.0, n=3)
    assert any(np.allclose(p, (1.0, 2.0)) for p in three[0])
    np.testing.assert_allclose(np.abs(three[0] - (1.0, 2.0)).max(), 2.0)
