"""Latent-space pieces of ``cryohet analyze``: PCA, k-means, nearest particles, subsampling, traversals."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from cryohet.analysis import clustering, embedding
from cryohet.analysis.clustering import (
    kmeans_latents,
    nearest_rows,
    read_kmeans_labels,
    write_kmeans,
)
from cryohet.analysis.embedding import LatentPCA, fit_pca, subsample_indices, umap_embed
from cryohet.analysis.series import latent_path, pc_traversal, suggest_level
from cryohet.errors import InputError


def _blobs(rng, n_per=200, centres=((0, 0, 0), (6, 1, 0), (12, -1, 1)), sd=0.4):
    z = np.concatenate([rng.normal(c, sd, size=(n_per, len(c))) for c in centres]).astype(np.float32)
    truth = np.repeat(np.arange(len(centres)), n_per)
    perm = rng.permutation(len(z))
    return z[perm], truth[perm]


def test_pca_matches_svd_and_fixes_signs(rng):
    z = rng.normal(size=(3000, 5)) @ rng.normal(size=(5, 5)) + 3.0
    pca = fit_pca(z.astype(np.float32))
    x = z - z.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(pca.variance, s**2 / (len(z) - 1), rtol=1e-4)
    np.testing.assert_allclose(np.abs(pca.components @ vt.T), np.eye(5), atol=1e-4)
    for row in pca.components:  # deterministic sign: largest loading positive
        assert row[np.argmax(np.abs(row))] > 0
    coords = pca.transform(z)
    np.testing.assert_allclose(coords.var(0, ddof=1), pca.variance, rtol=1e-3)
    np.testing.assert_allclose(pca.point(coords[:7]), z[:7], atol=1e-4)  # full basis: exact inverse
    assert pca.explained_ratio.sum() == pytest.approx(1.0)


def test_pca_chunked_equals_unchunked(rng, monkeypatch):
    z = rng.normal(size=(1001, 3)).astype(np.float32)
    ref = fit_pca(z)
    monkeypatch.setattr(embedding, "_CHUNK", 97)
    chunked = fit_pca(z)
    np.testing.assert_allclose(chunked.variance, ref.variance, rtol=1e-10)
    np.testing.assert_allclose(chunked.transform(z), ref.transform(z), atol=1e-5)


def test_pca_constant_latents():
    pca = fit_pca(np.zeros((50, 3), np.float32))
    assert np.all(pca.variance == 0) and np.all(pca.explained_ratio == 0)


def test_pca_save_load_roundtrip(tmp_path, rng):
    pca = fit_pca(rng.normal(size=(100, 4)))
    back = LatentPCA.load(pca.save(tmp_path / "pca.npz"))
    np.testing.assert_array_equal(back.components, pca.components)


def test_nearest_rows_matches_brute_force(rng, monkeypatch):
    z = rng.normal(size=(500, 3)).astype(np.float32)
    pts = rng.normal(size=(9, 3))
    monkeypatch.setattr(clustering, "_CHUNK", 64)
    brute = np.argmin(((z[:, None, :] - pts[None]) ** 2).sum(-1), axis=0)
    np.testing.assert_array_equal(nearest_rows(z, pts), brute)


def test_kmeans_recovers_blobs_deterministically(rng):
    from sklearn.metrics import adjusted_rand_score

    z, truth = _blobs(rng)
    a = kmeans_latents(z, 3, seed=0)
    b = kmeans_latents(z, 3, seed=0)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert adjusted_rand_score(truth, a.labels) == 1.0
    assert a.counts.tolist() == [200, 200, 200]
    # clusters numbered along PC1 of the data
    pca = fit_pca(z)
    pc1 = (a.centres - pca.mean) @ pca.components[0]
    assert np.all(np.diff(pc1) > 0)
    # representative = the particle nearest its centre, and it belongs to that cluster
    for c, r in enumerate(a.representatives):
        d = ((z - a.centres[c]) ** 2).sum(1)
        assert r == np.argmin(d) and a.labels[r] == c


def test_kmeans_fewer_distinct_latents_than_k(caplog):
    z = np.zeros((40, 2), np.float32)
    z[20:] = 1.0
    with caplog.at_level(logging.WARNING, logger="cryohet"):
        res = kmeans_latents(z, 5)
    assert res.k == 2 and sorted(res.counts.tolist()) == [20, 20]
    assert "only 2 distinct" in caplog.text
    constant = kmeans_latents(np.zeros((10, 3), np.float32), 4)
    assert constant.k == 1 and np.all(constant.labels == 0)


def test_kmeans_minibatch_path(rng, monkeypatch):
    from sklearn.metrics import adjusted_rand_score

    z, truth = _blobs(rng, n_per=400)
    monkeypatch.setattr(clustering, "MINIBATCH_ABOVE", 100)
    res = kmeans_latents(z, 3, seed=0)
    assert adjusted_rand_score(truth, res.labels) == 1.0


def test_kmeans_files_roundtrip(tmp_path, rng):
    z, _ = _blobs(rng, n_per=30)
    res = kmeans_latents(z, 3)
    write_kmeans(res, z, tmp_path / "kmeans3")
    np.testing.assert_array_equal(read_kmeans_labels(tmp_path / "kmeans3", len(z)), res.labels)
    assert read_kmeans_labels(tmp_path / "kmeans3", len(z) + 1) is None  # other run: recompute
    np.testing.assert_allclose(np.loadtxt(tmp_path / "kmeans3" / "centres_z.txt"), z[res.representatives], rtol=1e-5)
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "kmeans3" / "centres_ind.txt"), res.representatives)


def test_subsample_indices():
    np.testing.assert_array_equal(subsample_indices(10, 100), np.arange(10))
    a = subsample_indices(100_000, 500, seed=3)
    assert len(a) == 500 and len(np.unique(a)) == 500 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subsample_indices(100_000, 500, seed=3))


def test_umap_is_installed_and_separates_states():
    """umap-learn is a dependency (cryoDRGN users look at UMAP first): it must embed, and keep
    two well-separated states apart."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 4)).astype(np.float32)
    z[:200] += 6.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        emb = umap_embed(z)
        # numba's OpenMP reset the count torch shares with it; a run after an analysis in
        # the same process kept it, not every core
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert emb is not None and emb.shape == (400, 2)
    labels = (emb[:, 0] > np.median(emb[:, 0])).astype(int)
    truth = np.r_[np.zeros(200, int), np.ones(200, int)]
    assert max((labels == truth).mean(), (labels != truth).mean()) > 0.98


def test_umap_missing_is_a_logged_skip(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    with caplog.at_level(logging.INFO, logger="cryohet"):
        assert umap_embed(np.random.default_rng(0).normal(size=(50, 3))) is None
    assert "UMAP skipped" in caplog.text


def test_pc_traversal_on_data_and_exact(rng):
    z = (rng.normal(size=(800, 3)) * [3.0, 1.0, 0.2]).astype(np.float32)
    pca = fit_pca(z)
    coords = pca.transform(z)
    on = pc_traversal(pca, coords, z, 0, 5, on_data=True)
    exact = pc_traversal(pca, coords, z, 0, 5, on_data=False)
    values = np.percentile(coords[:, 0], np.linspace(5, 95, 5))
    np.testing.assert_allclose(pca.transform(exact.latents)[:, 0], values, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pca.transform(exact.latents)[:, 1:], 0, atol=1e-4)
    np.testing.assert_array_equal(on.rows, nearest_rows(z, exact.latents))
    np.testing.assert_array_equal(on.latents, z[on.rows])
    assert on.name == "pc1" and len(on.captions) == 5


def test_latent_path_interpolates_and_checks_range(rng):
    z = rng.normal(size=(20, 2)).astype(np.float32)
    s = latent_path(z, 3, 7, 5)
    np.testing.assert_allclose(s.latents[0], z[3])
    np.testing.assert_allclose(s.latents[-1], z[7])
    np.testing.assert_allclose(s.latents[2], (z[3] + z[7]) / 2, rtol=1e-6)
    with pytest.raises(InputError, match="out of range"):
        latent_path(z, 0, 20, 3)


def test_suggest_level_sits_between_background_and_peak():
    vol = np.zeros((32, 32, 32), np.float32)
    vol[12:20, 12:20, 12:20] = 1.0
    vol += np.random.default_rng(0).normal(0, 0.01, vol.shape).astype(np.float32)
    level = suggest_level(vol)
    assert 0.05 < level < 0.5


def test_graph_path_goes_through_the_data_not_across_it():
    """Particles on a half circle: the straight line between its ends crosses empty latent
    space; the graph path (cryoDRGN's graph_traversal) stays on the particles."""
    from cryohet.analysis.graph_path import graph_path_rows, resample_path

    rng = np.random.default_rng(0)
    angle = np.sort(rng.uniform(0, np.pi, 400))
    z = np.column_stack([10 * np.cos(angle), 10 * np.sin(angle)]) + rng.normal(0, 0.2, (400, 2))
    rows = graph_path_rows(z, 0, 399, n_neighbors=8)
    assert rows[0] == 0 and rows[-1] == 399
    radius = np.linalg.norm(z[rows], axis=1)
    assert radius.min() > 9.0  # the straight line passes through the centre (radius 0)
    assert np.all(np.diff(angle[rows]) > -0.1)  # it walks along the arc
    picked, frac = resample_path(z, rows, 5)
    assert len(picked) == 5 and picked[0] == 0 and picked[-1] == 399
    np.testing.assert_allclose(frac, np.linspace(0, 1, 5), atol=0.05)
    # two separate clusters are not joined through nothing
    far = np.r_[z, z + 100.0]
    with pytest.raises(InputError, match="not connected"):
        graph_path_rows(far, 0, 450, n_neighbors=5)


def test_movie_frames_show_the_surface_and_its_motion(tmp_path):
    """A ball moving along x: the rendered surface is where the ball is, at its size, and
    the GIF holds the series forward and back."""
    from PIL import Image

    from cryohet.analysis.movie import shaded_view, write_movie

    d = 32
    c = np.arange(d) - d // 2
    zz, yy, xx = np.meshgrid(c, c, c, indexing="ij")
    balls = [((xx - s) ** 2 + yy**2 + zz**2 <= 36).astype(np.float32) for s in (-6, 0, 6)]
    shade, hit = shaded_view(balls[2], 0.5, axis=0)  # seen along z: a disc of radius 6 at x = +6
    assert abs(hit.sum() - np.pi * 36) < 0.15 * np.pi * 36
    cols = np.flatnonzero(hit.any(axis=0)) - d // 2
    assert cols.min() == 0 and cols.max() == 12
    assert shade[hit].min() > 0.1 and shade[~hit].max() == 0.0
    out = write_movie(tmp_path / "movie.gif", iter(balls), 0.5, ["a", "b", "c"])
    gif = Image.open(out)
    assert gif.n_frames == 4 and gif.size == (3 * 160, 160 + 18)  # a, b, c, b: forward and back
    first = np.asarray(gif.convert("RGB"), dtype=np.float64)
    gif.seek(1)
    second = np.asarray(gif.convert("RGB"), dtype=np.float64)
    assert np.abs(first - second).mean() > 1.0  # the ball moved
