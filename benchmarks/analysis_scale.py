"""Scale of the latent analysis: PCA, k-means and UMAP on a million particles.

Synthetic latents ``(N, zdim)`` float32 (default 10^6 x 8: 20 anisotropic blobs plus a
curved one-dimensional manifold, so k-means and the embedding have structure to find)
go through exactly what ``cryohet analyze`` runs on them:

* ``PCA fit`` — :func:`cryohet.analysis.embedding.fit_pca` (exact: chunked covariance);
* ``PCA transform`` — every particle's PC coordinates;
* ``k-means`` — :func:`cryohet.analysis.clustering.kmeans_latents` (MiniBatchKMeans above
  10^5 particles, labels of all particles, renumbering, particle nearest each centre);
* ``subsample`` — the random subsample used for UMAP and the scatter plots;
* ``UMAP warm-up`` — UMAP of 5,000 points first (above 4,096 points UMAP uses NN-descent),
  so numba's one-off compilation is timed apart;
* ``UMAP`` — :func:`cryohet.analysis.embedding.umap_embed` on that subsample (``--no-umap``
  skips both UMAP rows).

Each row prints wall seconds and the peak resident memory (VmHWM, reset before the row)
and the process peak so far.

    python benchmarks/analysis_scale.py                       # 10^6 x 8, k 20, UMAP on 50k
    python benchmarks/analysis_scale.py -n 200000 --no-umap
    python benchmarks/analysis_scale.py --markdown results.md  # also the table as Markdown
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from cryohet.analysis.clustering import kmeans_latents
from cryohet.analysis.config import DEFAULT_MAX_POINTS
from cryohet.analysis.embedding import fit_pca, subsample_indices, umap_available, umap_embed


def _status_mb(key: str) -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # VmHWM := current RSS
    except OSError:
        pass


def synthetic_latents(n: int, zdim: int, seed: int = 0) -> np.ndarray:
    """Blobs and a curve in ``zdim`` dimensions, float32 ``(n, zdim)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(20, zdim))
    n_curve = n // 4
    z = np.empty((n, zdim), dtype=np.float32)
    lab = rng.integers(0, 20, size=n - n_curve)
    scales = rng.uniform(0.2, 1.0, size=(20, zdim))
    for s in range(0, n - n_curve, 262_144):
        lb = lab[s : s + 262_144]
        z[s : s + len(lb)] = centres[lb] + rng.normal(size=(len(lb), zdim)) * scales[lb]
    t = rng.uniform(0, 2 * np.pi, size=n_curve)
    curve = np.zeros((n_curve, zdim))
    curve[:, 0], curve[:, 1] = 6 * np.cos(t), 6 * np.sin(t)
    curve[:, 2:] = 0.3 * rng.normal(size=(n_curve, zdim - 2)) if zdim > 2 else 0.0
    z[n - n_curve :] = curve
    return z[rng.permutation(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="particles")
    ap.add_argument("--zdim", type=int, default=8)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, help="UMAP subsample")
    ap.add_argument("--no-umap", action="store_true")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table as Markdown to this file")
    args = ap.parse_args()

    z = synthetic_latents(args.n, args.zdim)
    rows: list[tuple[str, float, float, float]] = []
    state: dict = {}

    def step(name: str, fn) -> None:
        _reset_peak()
        t0 = time.perf_counter()
        state[name] = fn()
        rows.append((name, time.perf_counter() - t0, _status_mb("VmHWM"), _status_mb("VmRSS")))

    step("PCA fit", lambda: fit_pca(z))
    step("PCA transform (all)", lambda: state["PCA fit"].transform(z, n=2))
    step(f"k-means (k={args.k})", lambda: kmeans_latents(z, args.k, seed=0))
    step("subsample", lambda: subsample_indices(len(z), args.max_points, seed=0))
    if not args.no_umap and umap_available():
        sub = state["subsample"]
        warm = sub[: min(5000, len(sub))]
        step(f"UMAP warm-up ({len(warm):,} points, numba compile)", lambda: umap_embed(z[warm], seed=0))
        step(f"UMAP ({len(sub):,} points)", lambda: umap_embed(z[sub], seed=0))

    title = f"latent analysis, {args.n:,} x {args.zdim} float32 latents ({z.nbytes / 2**20:.0f} MiB), k = {args.k}"
    core = sum(sec for name, sec, _, _ in rows if not name.startswith("UMAP"))
    table = Table(title=title)
    for col, just in (
        ("step", "left"),
        ("seconds", "right"),
        ("peak RSS in step (MiB)", "right"),
        ("RSS after (MiB)", "right"),
    ):
        table.add_column(col, justify=just)
    for name, sec, peak, rss in rows:
        table.add_row(name, f"{sec:.2f}", f"{peak:.0f}", f"{rss:.0f}")
    table.add_row("PCA + k-means + subsample", f"{core:.2f}", "", "")
    Console(width=120).print(table)
    km = state[f"k-means (k={args.k})"]
    tail = (
        f"k-means cluster sizes: min {km.counts.min():,}, max {km.counts.max():,}; "
        f"PCA explained (first 3): {', '.join(f'{x:.3f}' for x in state['PCA fit'].explained_ratio[:3])}; "
        f"peak RSS over all steps {max(r[2] for r in rows):.0f} MiB"
    )
    print(tail)
    if args.markdown is not None:
        lines = [
            f"**{title}** ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
            "",
            "| step | seconds | peak RSS in step (MiB) | RSS after (MiB) |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {name} | {sec:.2f} | {peak:.0f} | {rss:.0f} |" for name, sec, peak, rss in rows]
        lines += [f"| **PCA + k-means + subsample** | **{core:.2f}** | | |", "", tail, ""]
        args.markdown.write_text("\n".join(lines))
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
