"""k-means on the latents, the particle nearest each centre, and the cluster files.

:func:`kmeans_latents` is deterministic for a given ``seed``: scikit-learn ``KMeans``
(``n_init=4``) up to :data:`MINIBATCH_ABOVE` particles, ``MiniBatchKMeans`` above
(batches of 16 384, ``n_init=3``, one thread; 10^6 latents in seconds). Clusters are then
renumbered by the first principal coordinate of their centres, so cluster 0 ... k-1 read
like a walk along the main direction of change.
``cryohet select --clusters`` reuses the labels ``analyze`` wrote
(``kmeans{k}/labels.npy``) and otherwise calls this same function with the same seed.

Files of ``kmeans{k}/`` (:func:`write_kmeans`):

* ``labels.npy`` (N,) int64 cluster of every particle (row order of ``latents.npy``);
* ``centres.txt`` k-means centres, one row per cluster;
* ``centres_ind.txt`` 0-based row of the particle nearest each centre;
* ``centres_z.txt`` that particle's latent — the latent each ``vol_NNN.mrc`` is decoded at.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..console import get_logger
from .embedding import fit_pca

__all__ = ["KMeansResult", "kmeans_latents", "nearest_rows", "write_kmeans", "read_kmeans_labels", "MINIBATCH_ABOVE"]

log = get_logger("analysis")

#: Above this many particles k-means switches to MiniBatchKMeans.
MINIBATCH_ABOVE = 100_000
_CHUNK = 65_536


@dataclass(frozen=True)
class KMeansResult:
    """``labels`` (N,), ``centres`` (k, zdim), ``representatives`` (k,) particle rows nearest
    each centre, ``counts`` (k,) particles per cluster; ``k`` may be below the request when
    the latents have fewer distinct values."""

    labels: np.ndarray
    centres: np.ndarray
    representatives: np.ndarray
    counts: np.ndarray

    @property
    def k(self) -> int:
        return int(len(self.centres))


def nearest_rows(latents: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For each row of ``points (m, zdim)``, the row of ``latents (N, zdim)`` nearest to it
    (Euclidean; ties to the lowest row). Chunked over N."""
    pts = np.atleast_2d(np.asarray(points, np.float64))
    best = np.full(len(pts), np.inf)
    arg = np.zeros(len(pts), dtype=np.int64)
    p2 = (pts**2).sum(1)
    for s in range(0, len(latents), _CHUNK):
        z = np.asarray(latents[s : s + _CHUNK], np.float64)
        d = (z**2).sum(1)[:, None] - 2.0 * z @ pts.T + p2[None]
        i = np.argmin(d, axis=0)
        v = d[i, np.arange(len(pts))]
        better = v < best
        best[better], arg[better] = v[better], i[better] + s
    return arg


def _distinct(latents: np.ndarray, limit: int) -> int:
    """Number of distinct rows, counted up to ``limit`` (on a subsample for large N)."""
    z = latents if len(latents) <= 200_000 else latents[:: max(1, len(latents) // 100_000)]
    return int(min(len(np.unique(np.asarray(z), axis=0)), limit))


def _fit(z: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notices on near-duplicate latents
        if len(z) <= MINIBATCH_ABOVE:
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
            return km.cluster_centers_.astype(np.float64), km.labels_.astype(np.int64)
        # one thread: per-batch work is tiny and OpenMP overhead dominated (3-4x slower on 2 busy cores)
        with threadpool_limits(limits=1, user_api="openmp"):
            km = MiniBatchKMeans(
                n_clusters=k, n_init=3, batch_size=16384, random_state=seed, max_no_improvement=20, compute_labels=False
            ).fit(z)
    centres = km.cluster_centers_.astype(np.float64)
    labels = np.concatenate([km.predict(z[s : s + _CHUNK]) for s in range(0, len(z), _CHUNK)]).astype(np.int64)
    return centres, labels


def kmeans_latents(latents: np.ndarray, k: int, seed: int = 0) -> KMeansResult:
    """k-means of ``latents (N, zdim)`` into ``k`` clusters (see the module doc)."""
    z = np.ascontiguousarray(latents, dtype=np.float32)
    if len(z) == 0:
        raise ValueError("no latents to cluster")
    k_eff = min(int(k), _distinct(z, int(k)))
    if k_eff < k:
        log.warning("k-means: only %d distinct latent value(s); using %d cluster(s) instead of %d", k_eff, k_eff, k)
    if k_eff == 1:
        centres, labels = z.mean(0, dtype=np.float64)[None], np.zeros(len(z), dtype=np.int64)
    else:
        centres, labels = _fit(z, k_eff, seed)
    # renumber along the first principal coordinate of the centres (stable order)
    pc = fit_pca(z)
    key = (centres - pc.mean) @ pc.components[0] if len(centres) > 1 else np.zeros(1)
    order = np.lexsort((np.arange(len(centres)), np.round(key, 9)))
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    centres, labels = centres[order], remap[labels]
    counts = np.bincount(labels, minlength=len(centres))
    reps = nearest_rows(z, centres)
    return KMeansResult(labels=labels, centres=centres.astype(np.float32), representatives=reps, counts=counts)


def write_kmeans(result: KMeansResult, latents: np.ndarray, folder: str | Path) -> list[Path]:
    """Write ``labels.npy``, ``centres.txt``, ``centres_ind.txt`` and ``centres_z.txt``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "labels.npy", out / "centres.txt", out / "centres_ind.txt", out / "centres_z.txt"]
    np.save(paths[0], result.labels.astype(np.int64))
    np.savetxt(paths[1], result.centres, fmt="%.6g", header="k-means centres, one row per cluster (latent units)")
    np.savetxt(paths[2], result.representatives, fmt="%d", header="0-based particle row nearest each centre")
    np.savetxt(
        paths[3],
        np.asarray(latents)[result.representatives],
        fmt="%.6g",
        header="latent of that particle (vol_NNN.mrc is decoded here)",
    )
    return paths


def read_kmeans_labels(folder: str | Path, n: int) -> np.ndarray | None:
    """``labels.npy`` of an earlier ``analyze`` when it exists and has ``n`` rows, else None."""
    p = Path(folder) / "labels.npy"
    if not p.exists():
        return None
    try:
        labels = np.load(p, allow_pickle=False)
    except Exception:
        return None
    if labels.ndim != 1 or len(labels) != n or labels.dtype.kind not in "iu":
        log.warning("%s: does not match the run's %d particles; recomputing the clusters", p, n)
        return None
    return labels.astype(np.int64)
