"""Low-dimensional views of the latent space: PCA (always) and UMAP (optional).

* :func:`fit_pca` is exact: the covariance of ALL latents is accumulated in float64
  chunks (``O(N zdim^2)``, 10^6 x 8 latents in well under a second) and diagonalised.
  Components are sorted by variance and their sign fixed (the largest-magnitude loading
  of each component is positive), so the same latents always give the same axes.
* :func:`umap_embed` runs UMAP (``umap-learn``, the optional ``cryohet[umap]`` extra) on
  a random subsample of at most ``max_points`` particles (:func:`subsample_indices`) and
  returns ``None`` with a logged note when the package is not importable.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..console import get_logger

__all__ = ["LatentPCA", "fit_pca", "subsample_indices", "umap_embed", "umap_available"]

log = get_logger("analysis")

_CHUNK = 262_144


@dataclass(frozen=True)
class LatentPCA:
    """Principal axes of the latents.

    Attributes:
        mean: (zdim,) mean latent.
        components: (zdim, zdim) rows are unit principal axes, largest variance first.
        variance: (zdim,) variance of the latents along each axis.
    """

    mean: np.ndarray
    components: np.ndarray
    variance: np.ndarray

    @property
    def explained_ratio(self) -> np.ndarray:
        """Fraction of the total variance along each axis (zeros for constant latents)."""
        total = float(self.variance.sum())
        return self.variance / total if total > 0 else np.zeros_like(self.variance)

    def transform(self, z: np.ndarray, n: int | None = None) -> np.ndarray:
        """PC coordinates ``(N, n)`` of latents ``z (N, zdim)`` (chunked, float32 out)."""
        comps = self.components[: (n or len(self.components))]
        z = np.atleast_2d(z)
        out = np.empty((len(z), len(comps)), dtype=np.float32)
        for s in range(0, len(z), _CHUNK):
            out[s : s + _CHUNK] = (np.asarray(z[s : s + _CHUNK], np.float64) - self.mean) @ comps.T
        return out

    def point(self, coords: np.ndarray) -> np.ndarray:
        """The latent at PC coordinates ``coords (..., m)`` (the remaining coordinates 0)."""
        c = np.asarray(coords, dtype=np.float64)
        return (self.mean + c @ self.components[: c.shape[-1]]).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        np.savez(p, mean=self.mean, components=self.components, variance=self.variance)
        return p

    @classmethod
    def load(cls, path: str | Path) -> LatentPCA:
        with np.load(path, allow_pickle=False) as f:
            return cls(mean=f["mean"], components=f["components"], variance=f["variance"])


def fit_pca(latents: np.ndarray) -> LatentPCA:
    """Exact PCA of ``latents (N, zdim)`` via the float64 covariance (see module doc)."""
    z = np.asarray(latents)
    n, d = z.shape
    total = np.zeros(d)
    for s in range(0, n, _CHUNK):
        total += np.asarray(z[s : s + _CHUNK], np.float64).sum(axis=0)
    mean = total / max(n, 1)
    cov = np.zeros((d, d))
    for s in range(0, n, _CHUNK):
        x = np.asarray(z[s : s + _CHUNK], np.float64) - mean
        cov += x.T @ x
    cov /= max(n - 1, 1)
    var, vecs = np.linalg.eigh(cov)
    order = np.argsort(var)[::-1]
    var, comps = np.clip(var[order], 0.0, None), vecs[:, order].T.copy()
    for row in comps:  # deterministic sign: largest-magnitude loading positive
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return LatentPCA(mean=mean, components=comps, variance=var)


def subsample_indices(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` rows (all rows when ``n`` is small)."""
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def umap_available() -> bool:
    """Whether ``umap-learn`` can be imported."""
    try:
        import umap  # noqa: F401
    except Exception:
        return False
    return True


def umap_embed(latents: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray | None:
    """2D UMAP of ``latents (n, zdim)`` (pass the subsample), or None without ``umap-learn``."""
    z = np.asarray(latents, dtype=np.float32)
    if len(z) < 4 or len(np.unique(z, axis=0)) < 4:
        log.info("UMAP skipped: fewer than 4 distinct latents")
        return None
    try:
        import umap
    except Exception as err:
        log.info(
            "UMAP skipped: umap-learn is not importable (%s); umap-learn is a dependency of cryohet: reinstall it",
            type(err).__name__,
        )
        return None
    nn = int(min(n_neighbors, len(z) - 1))
    log.info("UMAP of %d points (single-threaded for a fixed seed; the first use compiles numba code)", len(z))
    with warnings.catch_warnings(), _torch_threads_kept():
        warnings.simplefilter("ignore")  # n_jobs/random_state notice, spectral init on tiny sets
        reducer = umap.UMAP(n_components=2, n_neighbors=nn, random_state=seed, min_dist=0.1)
        return np.asarray(reducer.fit_transform(z), dtype=np.float32)


@contextlib.contextmanager
def _torch_threads_kept():
    """Keep torch's thread count across UMAP: its numba code resets the OpenMP thread count
    it shares with torch (to every core), so torch work after an analysis in the same
    process ran in teams the caller had not asked for (9x slower beside another busy
    process). Torch is not imported for this."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
