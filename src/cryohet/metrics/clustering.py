"""How well latent embeddings separate ground-truth states: k-means ARI/NMI, spreads, matching.

Latents are ``(N, zdim)`` float arrays (any units: the scores are scale-free), labels are
``(N,)`` integers (any values, not necessarily ``0..K-1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = [
    "ClusterScores",
    "ClusterMatch",
    "kmeans_scores",
    "cluster_scores",
    "latent_spread",
    "match_clusters",
]


@dataclass(frozen=True)
class ClusterScores:
    """Adjusted Rand index and normalised mutual information of ``predicted`` vs the truth."""

    ari: float
    nmi: float
    predicted: np.ndarray
    n_clusters: int


@dataclass(frozen=True)
class ClusterMatch:
    """One-to-one matching of predicted clusters to true labels (Hungarian, max agreement).

    ``confusion[i, j]`` counts items with true label ``true_labels[i]`` and predicted
    cluster ``pred_labels[j]``; ``mapping`` sends a predicted cluster to its matched true
    label; ``accuracy`` is the fraction of items on matched pairs.
    """

    confusion: np.ndarray
    true_labels: np.ndarray
    pred_labels: np.ndarray
    mapping: dict[int, int]
    accuracy: float


def _check(latents: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"need latents (N, zdim) and labels (N,), got {z.shape} and {y.shape}")
    return z, y


def cluster_scores(predicted: np.ndarray, labels: np.ndarray) -> ClusterScores:
    """ARI and NMI (arithmetic normalisation, scikit-learn's default) of a given clustering."""
    p = np.asarray(predicted)
    y = np.asarray(labels)
    return ClusterScores(
        ari=float(adjusted_rand_score(y, p)),
        nmi=float(normalized_mutual_info_score(y, p)),
        predicted=p,
        n_clusters=int(len(np.unique(p))),
    )


def kmeans_scores(
    latents: np.ndarray, labels: np.ndarray, k: int | None = None, seed: int = 0, n_init: int = 10
) -> ClusterScores:
    """k-means (``k`` defaults to the number of true states) on the latents, scored by ARI/NMI."""
    z, y = _check(latents, labels)
    n = int(k) if k is not None else int(len(np.unique(y)))
    pred = KMeans(n_clusters=n, n_init=n_init, random_state=seed).fit_predict(z)
    return cluster_scores(pred, y)


def latent_spread(latents: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Per state: mean distance of its latents to the state centroid / overall spread.

    The overall spread is the mean distance of all latents to the global centroid, so
    values well below 1 mean a tight state; ~1 means the state fills the whole space.
    """
    z, y = _check(latents, labels)
    overall = float(np.mean(np.linalg.norm(z - z.mean(axis=0), axis=1)))
    if overall == 0.0:
        return {int(c): 0.0 for c in np.unique(y)}
    out = {}
    for c in np.unique(y):
        zc = z[y == c]
        out[int(c)] = float(np.mean(np.linalg.norm(zc - zc.mean(axis=0), axis=1)) / overall)
    return out


def match_clusters(predicted: np.ndarray, labels: np.ndarray) -> ClusterMatch:
    """Confusion matrix and the one-to-one cluster <-> label matching maximising agreement."""
    p = np.asarray(predicted)
    y = np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"predicted {p.shape} and labels {y.shape} differ in shape")
    tl, ti = np.unique(y, return_inverse=True)
    pl, pi = np.unique(p, return_inverse=True)
    conf = np.zeros((len(tl), len(pl)), dtype=np.int64)
    np.add.at(conf, (ti.ravel(), pi.ravel()), 1)
    rows, cols = linear_sum_assignment(-conf)
    mapping = {int(pl[c]): int(tl[r]) for r, c in zip(rows, cols)}
    acc = float(conf[rows, cols].sum() / max(1, len(y)))
    return ClusterMatch(confusion=conf, true_labels=tl, pred_labels=pl, mapping=mapping, accuracy=acc)
