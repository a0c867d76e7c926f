"""Hierarchical SO(3) grid: sizes, RELION convention, uniformity, index mapping, refinement."""

from __future__ import annotations

import healpy
import numpy as np
import pytest

from cryohet.geometry import so3_grid as g
from cryohet.geometry.rotations import is_rotation, random_rotations, rotation_angle_deg


def covering_bound_deg(level: int) -> float:
    """Upper bound on the covering radius used by the tests (measured: 49, 26.1, 12.1, 6.1)."""
    return 56.0 / 2**level


@pytest.mark.parametrize("level, views, psis", [(0, 12, 6), (1, 48, 12), (2, 192, 24), (3, 768, 48)])
def test_counts_per_level(level, views, psis):
    assert g.n_views(level) == views
    assert g.n_psi(level) == psis
    assert g.grid_size(level) == views * psis == 72 * 8**level
    if level <= 2:
        G = g.base_grid(level)
        assert G.shape == (views * psis, 3, 3)
        assert is_rotation(G).all()


def test_relion_layout_view_direction_and_psi():
    level = 2
    idx = np.arange(g.grid_size(level))
    A = g.index_to_matrix(idx, level)
    pix, j = g.split_index(idx, level)
    # viewing direction = third row = HEALPix pixel centre (nested)
    v = np.stack(healpy.pix2vec(2**level, pix, nest=True), axis=-1)
    np.testing.assert_allclose(A[:, 2], v, atol=1e-12)
    eul = g.index_to_euler(idx, level)
    np.testing.assert_allclose(eul[:, 2], (j + 0.5) * 360.0 / g.n_psi(level))
    np.testing.assert_array_equal(g.join_index(pix, j, level), idx)
    # distinct rotations
    assert len(np.unique(np.round(A.reshape(len(A), -1), 6), axis=0)) == len(A)


def test_covering_radius_halves_per_level():
    R = random_rotations(2000, rng=7)
    maxima, means = [], []
    for level in range(4):
        d = g.nearest_distance_deg(R, g.base_grid(level))
        maxima.append(d.max())
        means.append(d.mean())
        # every random rotation has a grid point within the expected angular distance
        assert d.max() <= covering_bound_deg(level)
    for L in range(3):
        assert 0.4 <= maxima[L + 1] / maxima[L] <= 0.6
        assert 0.45 <= means[L + 1] / means[L] <= 0.55


def test_matrix_to_index_is_nearest_grid_point():
    level = 2
    R = random_rotations(400, rng=3)
    idx = g.matrix_to_index(R, level)
    d = rotation_angle_deg(g.index_to_matrix(idx, level), R)
    np.testing.assert_allclose(d, g.nearest_distance_deg(R, g.base_grid(level)), atol=1e-6)
    # round trip on grid points
    some = np.random.default_rng(0).choice(g.grid_size(3), 500, replace=False)
    np.testing.assert_array_equal(g.matrix_to_index(g.index_to_matrix(some, 3), 3), some)


def test_children_partition_next_level():
    level = 1
    ch = g.children(np.arange(g.grid_size(level)), level)
    assert ch.shape == (g.grid_size(level), 8)
    np.testing.assert_array_equal(np.sort(ch.ravel()), np.arange(g.grid_size(level + 1)))
    pix, _ = g.split_index(np.arange(g.grid_size(level)), level)
    cpix, _ = g.split_index(ch, level + 1)
    np.testing.assert_array_equal(cpix // 4, np.repeat(pix[:, None], 8, axis=1))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_neighbors_lie_near_parent(level):
    idx = np.arange(g.grid_size(level))
    nb, dist = g.neighbors(idx, level)
    assert nb.shape == dist.shape == (len(idx), 8)
    assert np.all(np.diff(dist, axis=1) >= -1e-9)  # sorted
    assert all(len(set(row)) == 8 for row in nb)  # unique
    # reported distances are the true ones
    Rn = g.index_to_matrix(nb.ravel(), level + 1).reshape(len(idx), 8, 3, 3)
    true = rotation_angle_deg(Rn, g.index_to_matrix(idx, level)[:, None])
    np.testing.assert_allclose(dist, true, atol=1e-6)
    assert dist.max() <= 0.7 * g.grid_spacing_deg(level)
    assert dist[:, 0].max() <= covering_bound_deg(level + 1)


def test_greedy_refinement_through_neighbors_finds_fine_grid_point():
    R = random_rotations(300, rng=11)
    level = 1
    idx = g.matrix_to_index(R, level)
    for L in range(level, 4):
        nb, _ = g.neighbors(idx, L, k=27)
        cand = g.index_to_matrix(nb.ravel(), L + 1).reshape(len(R), -1, 3, 3)
        idx = nb[np.arange(len(R)), rotation_angle_deg(cand, R[:, None]).argmin(axis=1)]
    final = rotation_angle_deg(g.index_to_matrix(idx, 4), R)
    assert final.max() <= covering_bound_deg(4)
    exact = rotation_angle_deg(g.index_to_matrix(g.matrix_to_index(R, 4), 4), R)
    assert np.mean(np.abs(final - exact) < 1e-6) >= 0.95
