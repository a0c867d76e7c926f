"""Clustering scores on latents: k-means ARI/NMI, spreads, Hungarian matching."""

from __future__ import annotations

import numpy as np
import pytest

from cryohet.metrics.clustering import cluster_scores, kmeans_scores, latent_spread, match_clusters


def blobs(rng, n_per=100, k=4, spread=0.1, dim=3):
    centres = rng.normal(scale=5.0, size=(k, dim))
    labels = np.repeat(np.arange(k) * 10 + 3, n_per)  # arbitrary label values
    z = np.repeat(centres, n_per, axis=0) + rng.normal(scale=spread, size=(k * n_per, dim))
    return z, labels


def test_perfect_clustering_scores_one(rng):
    z, y = blobs(rng)
    s = kmeans_scores(z, y)
    assert s.ari == pytest.approx(1.0) and s.nmi == pytest.approx(1.0)
    assert s.n_clusters == 4
    relabelled = cluster_scores(np.array([{3: 7, 13: 0, 23: 1, 33: 2}[v] for v in y]), y)
    assert relabelled.ari == pytest.approx(1.0)


def test_random_labels_score_zero(rng):
    z, y = blobs(rng)
    s = cluster_scores(rng.integers(0, 4, len(y)), y)
    assert abs(s.ari) < 0.05 and s.nmi < 0.05


def test_latent_spread(rng):
    z, y = blobs(rng, spread=0.1)
    sp = latent_spread(z, y)
    assert set(sp) == {3, 13, 23, 33}
    assert max(sp.values()) < 0.1
    mixed = latent_spread(z, rng.permutation(y))
    assert min(mixed.values()) > 0.8


def test_match_clusters_hungarian():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([5, 5, 7, 7, 7, 9, 9, 9, 5])
    m = match_clusters(p, y)
    assert m.mapping == {5: 0, 7: 1, 9: 2}
    assert m.accuracy == pytest.approx(7 / 9)
    assert m.confusion.sum() == len(y)
    np.testing.assert_array_equal(m.confusion, [[2, 1, 0], [0, 2, 0], [1, 0, 3]])
