"""Has the run converged? Latents and maps of the per-epoch snapshots against the last epoch.

(The question cryoDRGN's ``analyze_convergence`` answers; these are cryohet's measures.)
For each snapshot epoch (:mod:`cryohet.training.snapshots`; at most ``max_epochs`` of
them, evenly spread, the last always included), on a fixed random subsample of particles:

* ``neighbours_kept``: the fraction of each particle's ``k`` nearest neighbours in latent
  space that are also its neighbours at the last epoch. Invariant to rotations and scaling
  of the latent space (an auto-decoder's latents may turn as they train); it reaches 1 as
  the latent organisation settles.
* ``latent_change``: the RMS change of the latents from the previous snapshot, after the
  best rotation and scale (orthogonal Procrustes), relative to their spread.
* ``map_auc``: the CryoBench FSC AUC between the map at the mean latent of that epoch and
  the last epoch's, divided by the AUC of identical maps (so 1 is identical); it levels
  off when the maps stop changing.

Latents are ``(N, zdim)`` rows in input order; maps are decoded at the run's box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..console import get_logger

__all__ = ["convergence_table", "neighbours_kept", "procrustes_change"]

log = get_logger("analysis")


def neighbours_kept(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each row's ``k`` nearest neighbours in ``a`` that are also among its
    ``k`` nearest neighbours in ``b`` (same rows, any latent sizes)."""
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(a) - 1))
    if k < 1:
        return float("nan")
    na = NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a, return_distance=False)[:, 1:]
    nb = NearestNeighbors(n_neighbors=k + 1).fit(b).kneighbors(b, return_distance=False)[:, 1:]
    shared = [len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(na, nb)]
    return float(np.mean(shared) / k)


def procrustes_change(previous: np.ndarray, current: np.ndarray) -> float:
    """RMS of ``current`` minus ``previous`` turned and scaled onto it (orthogonal Procrustes,
    both centred), relative to the RMS spread of ``current``; NaN when sizes differ."""
    if previous.shape != current.shape:
        return float("nan")
    p = previous - previous.mean(axis=0)
    c = current - current.mean(axis=0)
    u, s, vt = np.linalg.svd(p.T @ c)
    rot = u @ vt
    scale = s.sum() / max(float((p**2).sum()), 1e-30)
    fitted = scale * p @ rot
    spread = np.sqrt((c**2).sum(axis=1).mean())
    return float(np.sqrt(((c - fitted) ** 2).sum(axis=1).mean()) / max(spread, 1e-30))


def convergence_table(
    run_dir: str | Path,
    device: str = "cpu",
    max_epochs: int = 12,
    sample: int = 2000,
    k: int = 10,
    seed: int = 0,
    maps: bool = True,
) -> list[dict[str, float]]:
    """One row per analysed snapshot epoch (see the module doc); empty when the run kept fewer
    than two snapshots."""
    from ..methods.base import load_run
    from ..metrics.fsc import fsc_cryobench
    from ..training.rundir import RunDir
    from ..training.snapshots import snapshot_epochs

    epochs = snapshot_epochs(run_dir)
    if len(epochs) < 2:
        return []
    pick = np.unique(np.linspace(0, len(epochs) - 1, min(max_epochs, len(epochs))).round().astype(int))
    chosen = [epochs[i] for i in pick]
    last = chosen[-1]
    z_last = RunDir(run_dir, epoch=last).load_latents().astype(np.float64)
    rows = np.sort(np.random.default_rng(seed).choice(len(z_last), size=min(sample, len(z_last)), replace=False))
    final_map, ceiling = None, 1.0
    if maps:
        model = load_run(run_dir, device=device, allow_unfinished=True, epoch=last)
        final_map = model.volume(z_last.mean(axis=0))
        ceiling = float(fsc_cryobench(final_map, final_map).auc)  # identical maps
    out: list[dict[str, float]] = []
    previous = None
    for epoch in chosen:
        z = RunDir(run_dir, epoch=epoch).load_latents().astype(np.float64)
        if len(z) != len(z_last):
            log.warning("epoch %d: %d latents, the last epoch has %d; skipped", epoch, len(z), len(z_last))
            continue
        row = {
            "epoch": float(epoch),
            "neighbours_kept": neighbours_kept(z[rows], z_last[rows], k),
            "latent_change": procrustes_change(previous, z[rows]) if previous is not None else float("nan"),
        }
        if final_map is not None:
            model = load_run(run_dir, device=device, allow_unfinished=True, epoch=epoch)
            row["map_auc"] = float(fsc_cryobench(model.volume(z.mean(axis=0)), final_map).auc) / ceiling
        out.append(row)
        previous = z[rows]
    return out
