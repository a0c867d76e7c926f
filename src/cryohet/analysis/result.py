"""What ``cryohet analyze`` computed (:class:`AnalysisResult`) and the command that reproduces it.

Shared by :mod:`.analyze` (which fills it) and :mod:`.report` (which renders it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .clustering import KMeansResult
from .config import AnalyzeConfig
from .embedding import LatentPCA
from .parts import PartMaps, PartMotion
from .runinfo import RunInfo
from .series import VolumeSeries

__all__ = ["AnalysisResult", "command_line"]


@dataclass
class AnalysisResult:
    """What :func:`analyze_run` computed and wrote (the report is built from this)."""

    cfg: AnalyzeConfig
    info: RunInfo
    describe: dict[str, Any]
    n_particles: int
    zdim: int
    pca: LatentPCA
    kmeans: KMeansResult
    subsample: np.ndarray
    umap_done: bool = False
    series: list[VolumeSeries] = field(default_factory=list)
    part_motion: PartMotion | None = None
    part_maps: PartMaps | None = None
    evaluation: dict[str, Any] | None = None
    eval_note: str | None = None
    latent_note: str | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: per-epoch snapshots against the last (:mod:`.convergence`); empty without snapshots
    convergence: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    #: Where the files are written while the analysis runs (a temporary sibling of
    #: ``out_dir`` that replaces it at the end); None once they are in place.
    work_dir: Path | None = None

    @property
    def out_dir(self) -> Path:
        """The analysis folder (its final place)."""
        return self.cfg.out_dir

    @property
    def write_dir(self) -> Path:
        """The folder the files are in now: :attr:`work_dir` while writing, else :attr:`out_dir`."""
        return self.work_dir if self.work_dir is not None else self.out_dir

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.html"

    def files_moved(self) -> None:
        """The work folder became :attr:`out_dir`: point every recorded path there."""
        if self.work_dir is None:
            return
        work, out = self.work_dir, self.out_dir

        def moved(p: Path) -> Path:
            try:
                return out / Path(p).relative_to(work)
            except ValueError:
                return Path(p)

        self.plots = {k: moved(v) for k, v in self.plots.items()}
        for s in self.series:
            s.files = [moved(f) for f in s.files]
        if self.part_maps is not None:
            self.part_maps.files = [moved(f) for f in self.part_maps.files]
        self.work_dir = None


def command_line(cfg: AnalyzeConfig) -> str:
    """The ``cryohet analyze`` command that reproduces ``cfg`` (non-default options only)."""
    default = AnalyzeConfig(run=cfg.run)
    parts = ["cryohet", "analyze", str(cfg.run)]
    flags = {
        "k": "--k",
        "pcs": "--pcs",
        "pc_steps": "--pc-steps",
        "path_steps": "--path-steps",
        "max_points": "--max-points",
        "gt": "--gt",
        "out": "--out",
        "device": "--device",
        "seed": "--seed",
        "path_mode": "--path-mode",
        "path_neighbors": "--path-neighbors",
    }
    for name, flag in flags.items():
        value = getattr(cfg, name)
        if value != getattr(default, name) and value is not None:
            parts += [flag, str(value)]
    if cfg.path is not None:
        parts += ["--path", str(cfg.path[0]), str(cfg.path[1])]
    for name, flag in (
        ("pc_on_data", "--pc-exact"),
        ("umap", "--no-umap"),
        ("volumes", "--no-volumes"),
        ("report", "--no-report"),
    ):
        if not getattr(cfg, name):
            parts.append(flag)
    if cfg.overwrite:
        parts.append("--overwrite")
    return " ".join(shlex.quote(p) for p in parts)
