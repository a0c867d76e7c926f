"""The path between two particles through the data: shortest path on a k-nearest-neighbour
graph of the latents (the idea of cryoDRGN's ``graph_traversal``).

A straight line between two latents can cross empty regions of latent space, where the
decoder shows conformations no particle has. The graph path only steps from a particle to
one of its ``n_neighbors`` nearest neighbours (edges weighted by Euclidean latent
distance, made symmetric), so every map along it is the map of a real particle's latent.

For large datasets the graph is built on the two end particles plus a random subsample
of ``max_points`` particles (the path then steps through subsample particles), which
keeps the cost at ``O(max_points · k · log)`` whatever the number of particles.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["graph_path_rows", "resample_path"]


def graph_path_rows(
    latents: np.ndarray, start: int, end: int, n_neighbors: int = 10, max_points: int = 20_000, seed: int = 0
) -> np.ndarray:
    """Particle rows (0-based) of the shortest k-NN-graph path from ``start`` to ``end``,
    both included, in path order. A pair that the graph does not connect is one line
    (:class:`InputError`) suggesting more neighbours or the straight path."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra
    from sklearn.neighbors import NearestNeighbors

    z = np.asarray(latents, dtype=np.float64)
    n = len(z)
    for i in (start, end):
        if not 0 <= i < n:
            raise InputError(f"--path particle {i} is out of range 0..{n - 1}")
    if start == end:
        return np.array([start], dtype=np.int64)
    nodes = np.arange(n)
    if n > max_points:
        rng = np.random.default_rng(seed)
        pick = rng.choice(n, size=max_points, replace=False)
        nodes = np.unique(np.r_[pick, start, end])
    k = int(min(n_neighbors, len(nodes) - 1))
    dist, nbr = NearestNeighbors(n_neighbors=k + 1).fit(z[nodes]).kneighbors(z[nodes])
    rows = np.repeat(np.arange(len(nodes)), k)
    graph = csr_matrix((dist[:, 1:].ravel() + 1e-12, (rows, nbr[:, 1:].ravel())), shape=(len(nodes),) * 2)
    graph = graph.maximum(graph.T)  # i -> j or j -> i: an edge both ways
    a, b = int(np.searchsorted(nodes, start)), int(np.searchsorted(nodes, end))
    length, pred = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    if not np.isfinite(length[b]):
        raise InputError(
            f"--path: particles {start} and {end} are not connected through their {k} nearest neighbours "
            "(separate clusters?); raise --path-neighbors or use --path-mode linear"
        )
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    return nodes[np.asarray(path[::-1], dtype=np.int64)]


def resample_path(latents: np.ndarray, rows: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` distinct particles of the path ``rows``, the ends included, each the one
    nearest an equal fraction of the path's length (a path of fewer particles comes back
    whole). Returns the rows and their fractions of the path length in [0, 1]."""
    rows = np.asarray(rows)
    z = np.asarray(latents, dtype=np.float64)[rows]
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(z, axis=0), axis=1))]
    frac = arc / arc[-1] if arc[-1] > 0 else np.linspace(0.0, 1.0, len(rows))
    m = len(rows)
    if m <= steps:
        return rows, frac
    pick = np.abs(frac[None, :] - np.linspace(0.0, 1.0, steps)[:, None]).argmin(axis=1)
    for k in range(1, steps):  # distinct and in order: room for the ones still to come
        pick[k] = min(max(pick[k], pick[k - 1] + 1), m - steps + k)
    return rows[pick], frac[pick]
