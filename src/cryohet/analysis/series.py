"""Volume series: which latents to decode, decoding them to ``vol_NNN.mrc``, ChimeraX movies.

Three kinds of series, each in its own folder of the analysis directory:

* ``kmeans{k}/`` — one map per k-means cluster, at the latent of the particle nearest the
  cluster centre (:mod:`.clustering`);
* ``pc{i}/`` — a traversal of principal component i: the points of the PC axis at the
  percentiles 5, 15, ..., 95 of the particles' PC-i coordinate (other coordinates at the
  mean). With ``on_data`` (the default) each point is replaced by the latent of the
  particle nearest to it, so every map is one the data supports; otherwise the axis
  point itself is decoded;
* ``path_{i}_{j}/`` — linear interpolation in latent space from particle i to particle j,
  both ends included, decoded at the interpolated points themselves.

Every folder also gets ``latents.txt`` (the decoded latents, one row per map, in file
order) and ``movie.cxc``, a ChimeraX script that opens the maps as a volume series at
:func:`suggest_level` and plays it back and forth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..console import get_logger, progress
from ..errors import InputError
from ..io.mrc import read_volume, write_volume
from ..io.paths import ensure_not_input
from .clustering import nearest_rows
from .embedding import LatentPCA

__all__ = [
    "VolumeSeries",
    "pc_traversal",
    "latent_path",
    "graph_latent_path",
    "decode_series",
    "suggest_level",
    "movie_script",
    "projections",
]

log = get_logger("analysis")

PERCENTILE_RANGE = (5.0, 95.0)


@dataclass
class VolumeSeries:
    """Latents to decode into ``folder`` and, after :func:`decode_series`, what was written.

    ``captions`` label each map (report and ``latents.txt``); ``rows`` are the particle rows
    the latents belong to (None for off-data points).
    """

    name: str
    title: str
    latents: np.ndarray
    captions: list[str]
    rows: np.ndarray | None = None
    files: list[Path] = field(default_factory=list)
    projections: list[np.ndarray] = field(default_factory=list)  # (3, D, D): sums along z, y, x
    level: float | None = None


def pc_traversal(
    pca: LatentPCA, coords: np.ndarray, latents: np.ndarray, pc: int, steps: int, on_data: bool = True
) -> VolumeSeries:
    """Series along principal component ``pc`` (0-based) at percentiles 5..95 of ``coords[:, pc]``."""
    pct = np.linspace(*PERCENTILE_RANGE, steps)
    values = np.percentile(coords[:, pc], pct)
    axis = np.zeros((steps, pc + 1))
    axis[:, pc] = values
    points = pca.point(axis)
    rows = nearest_rows(latents, points) if on_data else None
    z = np.asarray(latents)[rows] if rows is not None else points
    where = "nearest particle" if on_data else "on the axis"
    captions = [f"PC{pc + 1} p{p:.0f} = {v:+.3g}" for p, v in zip(pct, values)]
    return VolumeSeries(
        name=f"pc{pc + 1}",
        title=f"PC{pc + 1} traversal (percentiles {PERCENTILE_RANGE[0]:.0f}-{PERCENTILE_RANGE[1]:.0f}, {where})",
        latents=z.astype(np.float32),
        captions=captions,
        rows=rows,
    )


def latent_path(latents: np.ndarray, start: int, end: int, steps: int) -> VolumeSeries:
    """Linear interpolation from particle ``start`` to particle ``end`` (0-based rows)."""
    n = len(latents)
    for i in (start, end):
        if not 0 <= i < n:
            raise InputError(f"--path particle {i} is out of range 0..{n - 1}")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    z = (1 - t) * np.asarray(latents[start], np.float64) + t * np.asarray(latents[end], np.float64)
    captions = [f"t = {x:.2f}" for x in t[:, 0]]
    captions[0], captions[-1] = f"particle {start}", f"particle {end}"
    return VolumeSeries(
        name=f"path_{start}_{end}",
        title=f"Path from particle {start} to particle {end} (linear in latent space)",
        latents=z.astype(np.float32),
        captions=captions,
    )


def graph_latent_path(
    latents: np.ndarray, start: int, end: int, steps: int, neighbors: int = 10, seed: int = 0
) -> VolumeSeries:
    """Particles along the shortest nearest-neighbour-graph path from particle ``start`` to
    ``end`` (:mod:`.graph_path`), ``steps`` of them at equal fractions of its length."""
    from .graph_path import graph_path_rows, resample_path

    full = graph_path_rows(latents, start, end, n_neighbors=neighbors, seed=seed)
    rows, frac = resample_path(latents, full, steps)
    captions = [f"particle {r} ({f:.0%})" for r, f in zip(rows, frac)]
    log.info("graph path %d -> %d: %d particles, %d maps along it", start, end, len(full), len(rows))
    return VolumeSeries(
        name=f"path_{start}_{end}",
        title=f"Path from particle {start} to particle {end} through the data ({len(full)} particles, {neighbors}-NN)",
        latents=np.asarray(latents)[rows].astype(np.float32),
        captions=captions,
        rows=rows,
    )


def projections(vol: np.ndarray) -> np.ndarray:
    """(3, D, D) sums of ``vol (z, y, x)`` along z (top), y (front) and x (side)."""
    v = np.asarray(vol, dtype=np.float32)
    return np.stack([v.sum(0), v.sum(1), v.sum(2)])


def suggest_level(vol: np.ndarray) -> float:
    """A surface level for ChimeraX: 15 % of the 99.9th-percentile density, but at least
    5 standard deviations above the mean of the box edge (background)."""
    v = np.asarray(vol, dtype=np.float32)
    peak = float(np.percentile(v, 99.9))
    d = v.shape[0]
    edge = (
        np.concatenate(
            [
                v[:2].ravel(),
                v[-2:].ravel(),
                v[:, :2].ravel(),
                v[:, -2:].ravel(),
                v[:, :, :2].ravel(),
                v[:, :, -2:].ravel(),
            ]
        )
        if d > 8
        else v.ravel()
    )
    level = max(0.15 * peak, float(edge.mean() + 5 * edge.std()))
    return float(level) if np.isfinite(level) else 0.0


def movie_script(series: VolumeSeries) -> str:
    """ChimeraX commands opening ``vol_*.mrc`` of the folder as a volume series and playing it."""
    n = len(series.files)
    lines = [
        f"# cryohet analyze: {series.title}; {n} maps (open with: chimerax movie.cxc)",
        "# ChimeraX runs this in the script's folder; change the level if the surface looks too thin or too fat",
        "open vol_*.mrc vseries true",
        f"volume #1 level {series.level or 0.0:.6g} style surface color #6baed6",
        "view",
        "vseries play #1 loop true direction oscillate maxFrameRate 4",
    ]
    return "\n".join(lines) + "\n"


def decode_series(model, series: VolumeSeries, folder: Path, protected: list[Path]) -> VolumeSeries:
    """Decode every latent of ``series`` with ``model`` into ``folder/vol_NNN.mrc`` (native box
    and pixel size), keep their projections, write ``latents.txt`` and ``movie.cxc``."""
    folder.mkdir(parents=True, exist_ok=True)  # a fresh folder: analyze writes into a new one each time
    mean_map = None
    series.files, series.projections = [], []
    zs = np.atleast_2d(series.latents)
    for i, vol in enumerate(
        progress(model.volumes(zs), total=len(zs), description=f"decoding {series.name}", unit="map", log_every_s=5.0)
    ):
        vol = np.asarray(vol, dtype=np.float32)
        path = ensure_not_input(folder / f"vol_{i:03d}.mrc", protected)
        series.files.append(write_volume(path, vol, model.apix))
        series.projections.append(projections(vol))
        mean_map = vol.astype(np.float64) if mean_map is None else mean_map + vol
    series.level = suggest_level(mean_map / len(zs)) if mean_map is not None else None
    header = f"{series.title}: latent of vol_NNN.mrc, one row per map"
    if series.rows is not None:
        body = np.column_stack([np.asarray(series.rows, np.float64), zs])
        np.savetxt(
            folder / "latents.txt",
            body,
            fmt=["%d"] + ["%.6g"] * zs.shape[1],
            header=header + " (first column: particle row)",
        )
    else:
        np.savetxt(folder / "latents.txt", zs, fmt="%.6g", header=header)
    (folder / "movie.cxc").write_text(movie_script(series))
    from .movie import write_movie

    maps = (read_volume(f)[0] for f in series.files)  # one map in memory at a time
    write_movie(folder / "movie.gif", maps, series.level or 0.0, series.captions)
    from .models import write_model_series

    write_model_series(model, zs, folder)  # atomic-model methods: the same series as models
    log.info(
        "wrote %d map%s to %s/ (ChimeraX: %s/movie.cxc)",  # relative: the folder may be staged
        len(series.files),
        "s" * (len(series.files) != 1),
        folder.name,
        folder.name,
    )
    return series
