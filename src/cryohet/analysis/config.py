"""Typed options of ``cryohet analyze``, ``select`` and ``export`` (shared by the CLI and the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from ..config import StrictModel, validation_message
from ..errors import ConfigError

__all__ = ["AnalyzeConfig", "SelectConfig", "ExportConfig", "build_config", "DEFAULT_MAX_POINTS", "DEFAULT_SEED"]

#: Above this many particles, UMAP and the scatter plots use a random subsample this size.
DEFAULT_MAX_POINTS = 50_000
#: Seed of every random choice in the analysis (k-means, subsamples, UMAP).
DEFAULT_SEED = 0


class AnalyzeConfig(StrictModel):
    """What ``analyze_run`` computes for one run directory. Everything lands in ``out``
    (default ``RUN/analyze``), written fresh (an existing folder is replaced as a whole, and
    only with ``overwrite``); the run's own files are never written."""

    run: Path = Field(description="run directory of any method")
    out: Path | None = Field(None, description="output folder (default RUN/analyze)")
    k: int = Field(20, ge=1, description="k-means clusters on the latents")
    pcs: int = Field(2, ge=0, description="principal components to traverse (capped at zdim)")
    pc_steps: int = Field(10, ge=2, description="volumes per PC traversal, at percentiles 5..95")
    pc_on_data: bool = Field(
        True,
        description="decode each PC point at the latent of the particle nearest to it (on the data manifold); "
        "False decodes the point on the PC axis itself",
    )
    path: tuple[int, int] | None = Field(None, description="two particle indices (0-based rows) for a latent path")
    path_steps: int = Field(10, ge=2, description="volumes along --path (both ends included)")
    path_mode: Literal["graph", "linear"] = Field(
        "graph",
        description="graph: shortest path through the particles' nearest-neighbour graph (cryoDRGN's "
        "graph_traversal; every map is a particle's); linear: the straight line between the two latents",
    )
    path_neighbors: int = Field(10, ge=2, description="nearest neighbours per particle in the --path graph")
    umap: bool = Field(True, description="also a UMAP embedding (needs the optional umap-learn)")
    max_points: int = Field(DEFAULT_MAX_POINTS, ge=100, description="UMAP/scatter subsample above this many particles")
    gt: Path | None = Field(
        None, description="simulated dataset (or its gt/ folder) for evaluation and true-state colours"
    )
    volumes: bool = Field(True, description="decode and write volumes (False: latent plots, clusters and report only)")
    parts: bool = Field(True, description="part maps and part-motion tables for part-aware methods")
    report: bool = Field(True, description="write report.html")
    device: str = Field("cpu", description="device on which the method decodes volumes")
    seed: int = DEFAULT_SEED
    epoch: int | None = Field(
        None,
        ge=1,
        description="analyse the run as it was after this epoch (its snapshot in RUN/epochs/); "
        "default output RUN/analyze.EPOCH",
    )
    convergence: bool = Field(
        True, description="compare the per-epoch snapshots with the last one (latents and maps), when the run kept some"
    )
    allow_unfinished: bool = Field(False, description="analyse a run that is still training or was killed")
    overwrite: bool = Field(False, description="replace an existing non-empty output folder (as a whole)")

    @property
    def out_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return Path(self.run) / ("analyze" if self.epoch is None else f"analyze.{self.epoch}")


class SelectConfig(StrictModel):
    """Which particles ``select_particles`` writes, and where. Exactly one of ``clusters``,
    ``latent_box`` and ``indices`` is given."""

    run: Path
    out: Path = Field(description="subset file: .star, .cs or .pkl (cryoDRGN ind.pkl)")
    clusters: list[int] | None = Field(None, description="k-means cluster numbers (as analyze wrote them)")
    k: int | None = Field(
        None,
        ge=1,
        description="the analyze clustering (kmeans{k}) the numbers refer to; default: the one analyze wrote",
    )
    latent_box: str | None = Field(None, description="'pc1:-1:2,z0:0:3': keep particles inside every range")
    indices: Path | None = Field(None, description="file of 0-based particle rows (.npy, .pkl or text)")
    complement: bool = Field(False, description="keep the particles NOT selected")
    analyze_dir: Path | None = Field(
        None, description="where analyze wrote its clusters (default RUN/analyze, RUN/analyze.EPOCH with --epoch)"
    )
    epoch: int | None = Field(None, ge=1, description="select on the latents of this epoch's snapshot")
    allow_unfinished: bool = Field(False, description="select from a run that is still training or was killed")
    overwrite: bool = Field(False, description="replace existing output files (never an input)")

    @field_validator("out")
    @classmethod
    def _known_suffix(cls, v: Path) -> Path:
        if Path(v).suffix.lower() not in (".star", ".cs", ".pkl"):
            raise ValueError(f"output must end in .star, .cs or .pkl (cryoDRGN ind.pkl), got '{Path(v).name}'")
        return v

    @property
    def analysis_dir(self) -> Path:
        if self.analyze_dir is not None:
            return Path(self.analyze_dir)
        return Path(self.run) / ("analyze" if self.epoch is None else f"analyze.{self.epoch}")


class ExportConfig(StrictModel):
    """What ``export_poses`` writes: the poses of ``run`` in the format of ``out``'s extension."""

    run: Path
    out: Path = Field(description="particles.star (RELION), particles.cs (cryoSPARC) or poses.pkl (cryoDRGN)")
    flip: bool = Field(False, description="the poses of the mirrored map (the other hand; cryohet volumes --flip)")
    allow_unfinished: bool = Field(False, description="export from a run that is still training or was killed")
    overwrite: bool = Field(False, description="replace existing output files (never an input)")

    @field_validator("out")
    @classmethod
    def _known_suffix(cls, v: Path) -> Path:
        if Path(v).suffix.lower() not in (".star", ".cs", ".pkl"):
            raise ValueError(f"output must end in .star, .cs or .pkl (cryoDRGN poses.pkl), got '{Path(v).name}'")
        return v


def build_config(model: type[StrictModel], **fields) -> StrictModel:
    """Validate ``fields`` into ``model``; a bad value is a one-line :class:`ConfigError`."""
    try:
        return model(**fields)
    except ValidationError as err:
        raise ConfigError(validation_message(err)) from None
