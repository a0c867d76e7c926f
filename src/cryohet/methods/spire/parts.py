"""Part discovery: two rounds of k-means++ on stage-A Gaussians (motion groups, then space).

**Round 1 (features).** The paper clusters the free features ``f_i``, on the premise that
Gaussians moving together, or appearing together, end up with similar features. Two
descriptors are offered:

* ``"motion"`` (default, ours): what the features *do*. The stage-A decoder is evaluated
  at ``M`` latents from the learned table. For every Gaussian, the rigid transform
  ``(R_i(z), t_i(z))`` that best maps its ``k`` nearest neighbours from their rest
  positions to their positions at ``z`` is fitted (Kabsch, about the box centre). All
  Gaussians of one rigid body share the same transform whatever their position, so the
  descriptor ``[L (R_i(z) - I), t_i(z), L (o_i(z) - 1)]_z`` (``L`` = particle radius of
  gyration, so every term is a displacement in pixels; ``o`` = occupancy) is constant
  within a body or a subunit and differs between them. Raw features or raw
  displacements would instead split a rotating body by distance from its axis, and the
  free features of static Gaussians receive no gradient and stay random.
* ``"features"`` (the paper, literal): k-means++ on the standardised free features.

The number of motion groups, when not given: the descriptors are projected on their
three main principal components (coherent motions; stage A's per-Gaussian jitter is
spread over all dimensions), and K grows while one more k-means++ group removes at least
25 % of the remaining inertia; one group when the RMS motion descriptor is below 0.5 px
(no heterogeneity found). Measured on igg-1d (4 000 images, 20 states): 3 groups, with
87 % of the moving Fab's Gaussians in one part that holds 18 % of the rest. (A rigid
re-assignment of groups by Kabsch residuals was tried and dropped: stage-A jitter dominates
those residuals and it halved the Fab's purity.)

**Round 2 (positions).** The least-moving group (smallest mean RMS excursion of its
Gaussians plus L × the spread of their occupancy, i.e. where stage A saw no motion; all
groups with the ``"features"`` descriptor) is split by k-means++ on the Gaussians' positions
into the fewest pieces whose radius of gyration is at most ``max_radius_px``
(default 0.6 × the particle's radius of gyration); with ``n_parts`` given, the largest
pieces are split further (or the smallest merged) until there are exactly ``n_parts``.

**Anchors.** Each part's anchor is the Gaussian nearest its centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans

from ...geometry.rigid import kabsch

__all__ = ["PartAssignment", "discover_parts", "local_rigid_descriptors", "radius_of_gyration"]


@dataclass
class PartAssignment:
    """Result of part discovery on the coarse Gaussians."""

    labels: np.ndarray  # (G,) part of each coarse Gaussian, 0..K-1
    anchors: np.ndarray  # (K,) index of each part's anchor Gaussian
    motion_groups: np.ndarray  # (G,) round-1 group of each Gaussian
    criterion: str

    @property
    def n_parts(self) -> int:
        return int(len(self.anchors))


def radius_of_gyration(points: np.ndarray, weights: np.ndarray | None = None) -> float:
    w = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
    c = np.average(points, axis=0, weights=w)
    return float(np.sqrt(np.average(((points - c) ** 2).sum(axis=1), weights=w)))


def local_rigid_descriptors(
    positions: np.ndarray, occupancy: np.ndarray, base_positions: np.ndarray, neighbours: int = 8
) -> np.ndarray:
    """(G, M * 13) motion descriptors (pixels) from trajectories.

    Args:
        positions: (M, G, 3) Gaussian centres (px, from the box centre) at M latents.
        occupancy: (M, G) occupancy gates at those latents.
        base_positions: (G, 3) rest positions, defining each Gaussian's neighbourhood.
    """

    base = torch.as_tensor(base_positions, dtype=torch.float64)
    pos = torch.as_tensor(positions, dtype=torch.float64)
    occ = torch.as_tensor(occupancy, dtype=torch.float64)
    m, g, _ = pos.shape
    k = min(neighbours, g)
    nn_idx = torch.cdist(base, base).topk(k, largest=False).indices  # (G, k)
    src = base[nn_idx]  # (G, k, 3)
    w = torch.ones(g, k, dtype=torch.float64)
    scale = radius_of_gyration(base_positions)
    rows = []
    for j in range(m):
        rot, t = kabsch(src, pos[j][nn_idx], w)  # (G, 3, 3), (G, 3)
        eye = torch.eye(3, dtype=torch.float64)
        rows.append(torch.cat([scale * (rot - eye).reshape(g, 9), t, scale * (occ[j] - 1.0)[:, None]], dim=1))
    return torch.cat(rows, dim=1).numpy()


def _choose_groups(desc: np.ndarray, k_max: int, seed: int, modes: int = 3) -> tuple[int, np.ndarray, str]:
    """Number of motion groups by diminishing returns of k-means++ on the main motion modes.

    One group when the RMS motion descriptor is below 0.5 px (no heterogeneity found).
    Otherwise the descriptors are projected on their first ``modes`` principal components
    (the coherent motions; stage A's per-Gaussian jitter spreads over every dimension and
    would otherwise drown them: on igg-1d the Fab's group removed 9 % of the raw inertia
    but 34 % of the 3-mode inertia), and K grows while one more k-means++ group removes at
    least 25 % of the remaining within-group inertia, that inertia is above 0.5 px RMS and
    no group is a sliver (< 5 % of the Gaussians: those whose neighbourhood spans a boundary).
    """
    centred = desc - desc.mean(axis=0)
    per_latent = max(1, desc.shape[1] // 13)
    rms = np.sqrt(float((centred**2).sum()) / len(desc) / per_latent)
    if rms < 0.5:
        return 1, np.zeros(len(desc), dtype=np.int64), f"motion RMS {rms:.2f} px < 0.5 px: one motion group"
    n_modes = min(modes, *centred.shape)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    x = centred @ vt[:n_modes].T
    total = float((x**2).sum())
    prev_inertia, prev_labels, k = total, np.zeros(len(desc), dtype=np.int64), 1
    for k_try in range(2, k_max + 1):
        km = KMeans(n_clusters=k_try, init="k-means++", n_init=8, random_state=seed).fit(x)
        if km.inertia_ > 0.75 * prev_inertia or np.bincount(km.labels_).min() < 0.05 * len(desc):
            break  # diminishing returns, or a sliver (Gaussians whose neighbourhood spans a boundary)
        k, prev_inertia, prev_labels = k_try, float(km.inertia_), km.labels_.astype(np.int64)
        if np.sqrt(prev_inertia / len(desc) / per_latent) < 0.5:
            break  # the groups explain the coherent motion to within half a pixel
    explained = 100 * (1 - prev_inertia / total)
    return (
        k,
        prev_labels,
        (
            f"{k} motion groups (k-means++ on the {n_modes} main motion modes until a group removes < 25% "
            f"of the inertia; {explained:.0f}% explained)"
        ),
    )


def _smooth_groups(points: np.ndarray, groups: np.ndarray, neighbours: int = 9, iterations: int = 3) -> np.ndarray:
    """Majority vote of each Gaussian's spatial neighbours (itself included).

    The local rigid descriptor of a Gaussian whose neighbourhood spans two bodies is a
    mixture of both motions, so k-means mislabels a few at every boundary.
    """
    from scipy.spatial import cKDTree

    k = min(neighbours, len(points))
    _, nn = cKDTree(points).query(points, k=k)
    labels = groups.copy()
    n_groups = int(labels.max()) + 1
    for _ in range(iterations):
        votes = np.zeros((len(points), n_groups))
        np.add.at(votes, (np.repeat(np.arange(len(points)), k), labels[nn].ravel()), 1.0)
        new = votes.argmax(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k <= 1 or len(x) <= k:
        return np.zeros(len(x), dtype=np.int64) if k <= 1 else np.arange(len(x))
    return KMeans(n_clusters=k, init="k-means++", n_init=8, random_state=seed).fit_predict(x)


def _split_spatially(points: np.ndarray, max_radius: float, seed: int, k_max: int = 8) -> np.ndarray:
    for k in range(1, k_max + 1):
        lab = _kmeans(points, k, seed)
        if all(radius_of_gyration(points[lab == j]) <= max_radius for j in range(k)):
            return lab
    return lab


def _relabel(labels: np.ndarray) -> np.ndarray:
    _, inv = np.unique(labels, return_inverse=True)
    return inv.astype(np.int64)


def discover_parts(
    positions: np.ndarray,
    occupancy: np.ndarray,
    base_positions: np.ndarray,
    amplitudes: np.ndarray,
    features: np.ndarray | None = None,
    n_parts: int | None = None,
    max_radius_px: float | None = None,
    descriptor: str = "motion",
    seed: int = 0,
    k_max: int = 8,
) -> PartAssignment:
    """Assign the coarse Gaussians to parts.

    Args:
        positions: (M, G, 3) Gaussian centres (px) at M latents; occupancy: (M, G).
        base_positions: (G, 3) centres used for the spatial round and anchors.
        amplitudes: (G,) for the particle's radius of gyration.
        features: (G, F) free features (``descriptor="features"``).
        n_parts: total number of parts, or None for automatic.
        max_radius_px: spatial round's radius-of-gyration limit.
    """
    g = len(base_positions)
    if descriptor == "motion":
        desc = local_rigid_descriptors(positions, occupancy, base_positions)
        k1, groups, criterion = _choose_groups(desc, k_max if n_parts is None else min(k_max, n_parts), seed)
        if k1 > 1:
            groups = _smooth_groups(base_positions, groups)
    elif descriptor == "features":
        if features is None:
            raise ValueError("descriptor 'features' needs the free features")
        f = (features - features.mean(axis=0)) / features.std(axis=0).clip(1e-8)
        k1 = 2 if n_parts is None else min(2, n_parts)
        criterion = "k-means++ on free features (paper), 2 feature groups"
        groups = _kmeans(f, k1, seed)
    else:
        raise ValueError(f"unknown descriptor {descriptor!r}")
    groups = _relabel(groups)

    rg_particle = radius_of_gyration(base_positions, np.clip(amplitudes, 0, None) + 1e-12)
    limit = max_radius_px if max_radius_px is not None else 0.6 * rg_particle
    # Only the least-moving group is split in space: a group found by its motion is one
    # rigid body (splitting it would cut a Fab in two), while the rest, where stage A saw
    # no motion, is cut into compact pieces that stage B may still move independently.
    if descriptor == "motion" and groups.max() > 0:
        # how much each Gaussian moves or fades across the latents (px): its RMS excursion
        # plus L x the spread of its occupancy (L = particle radius of gyration)
        excursion = np.sqrt(((positions - positions.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0))
        motion = excursion + radius_of_gyration(base_positions) * occupancy.std(axis=0)
        split_groups = {int(np.argmin([motion[groups == j].mean() for j in range(groups.max() + 1)]))}
    else:
        split_groups = set(range(groups.max() + 1))
    labels = np.zeros(g, dtype=np.int64)
    next_label = 0
    for grp in range(groups.max() + 1):
        idx = np.nonzero(groups == grp)[0]
        split = n_parts is None and grp in split_groups
        sub = _split_spatially(base_positions[idx], limit, seed) if split else np.zeros(len(idx), np.int64)
        labels[idx] = sub + next_label
        next_label += int(sub.max()) + 1
    if n_parts is not None:
        labels = _adjust_count(labels, base_positions, n_parts, seed)
        criterion += f"; {n_parts} parts requested"
    else:
        criterion += f"; spatial split at radius of gyration <= {limit:.1f} px"
    labels = _relabel(labels)
    anchors = np.array([_anchor(base_positions, labels, k) for k in range(labels.max() + 1)])
    return PartAssignment(labels, anchors, groups, criterion)


def _adjust_count(labels: np.ndarray, points: np.ndarray, n_parts: int, seed: int) -> np.ndarray:
    labels = labels.copy()
    while labels.max() + 1 < n_parts:  # split the part with the largest radius of gyration
        rgs = [
            radius_of_gyration(points[labels == k]) if (labels == k).sum() > 1 else -1 for k in range(labels.max() + 1)
        ]
        worst = int(np.argmax(rgs))
        idx = np.nonzero(labels == worst)[0]
        if len(idx) < 2:
            break
        sub = _kmeans(points[idx], 2, seed)
        labels[idx[sub == 1]] = labels.max() + 1
    while labels.max() + 1 > n_parts:  # merge the smallest part into its nearest neighbour
        counts = np.bincount(labels)
        small = int(np.argmin(counts))
        centres = np.array([points[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
        d = np.linalg.norm(centres - centres[small], axis=1)
        d[small] = np.inf
        labels[labels == small] = int(np.argmin(d))
        labels = _relabel(labels)
    return labels


def _anchor(points: np.ndarray, labels: np.ndarray, k: int) -> int:
    idx = np.nonzero(labels == k)[0]
    centroid = points[idx].mean(axis=0)
    return int(idx[np.argmin(np.linalg.norm(points[idx] - centroid, axis=1))])
