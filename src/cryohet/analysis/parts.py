"""Parts of part-aware methods: how much each part moves per cluster, and part maps.

Motion comes from the run's ``extras/part_motion.npz`` (CryoSPIRE writes it; any method
may): ``rotations`` (N, K, 3, 3) of each part about its anchor and ``translations_A``
(N, K, 3), both relative to the run's rest frame (the Gaussians of
``extras/gaussians.npz``: identity rotation, zero translation), and optionally
``occupancy`` (N, K). Per particle, the rotation angle is
``arccos((trace R - 1) / 2)`` in degrees and the translation its length in Å;
:func:`part_motion_summary` averages these magnitudes over each cluster's particles.

Part maps (:func:`write_part_maps`) are :meth:`TrainedModel.part_volumes` at one
representative latent, written as ``parts/part_00.mrc`` ... with ``parts/parts.cxc``
colouring each part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..console import get_logger, progress
from ..io.mrc import write_volume
from ..io.paths import ensure_not_input
from .series import projections, suggest_level

try:  # one colour table for every part display of cryohet
    from .volumes import PART_COLOURS
except ImportError:  # pragma: no cover - volumes.py belongs to another module owner
    PART_COLOURS = (
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
    )

__all__ = [
    "PartMotion",
    "load_part_motion",
    "rotation_angles_deg",
    "part_motion_summary",
    "PartMaps",
    "write_part_maps",
    "parts_script",
    "part_colours",
    "PART_COLOURS",
]

log = get_logger("analysis")

_CHUNK = 65_536


def part_colours(n: int) -> list[str]:
    """``n`` colours for parts: cryohet's :data:`PART_COLOURS` when they suffice, else
    strong colours with hues stepped by the golden angle (distinct for any ``n``)."""
    if n <= len(PART_COLOURS):
        return list(PART_COLOURS[:n])
    import colorsys

    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb(
            (0.6 + i * 0.618033988749895) % 1.0, 0.85 - 0.25 * (i % 2), 0.92 - 0.22 * (i % 3 == 2)
        )
        out.append(f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}")
    return out


@dataclass(frozen=True)
class PartMotion:
    """Per cluster (rows) and part (columns): mean rotation angle (°), mean translation (Å)
    and mean occupancy (None when the run has none); ``counts`` particles per cluster."""

    angle_deg: np.ndarray
    translation_A: np.ndarray
    occupancy: np.ndarray | None
    counts: np.ndarray

    @property
    def n_parts(self) -> int:
        return int(self.angle_deg.shape[1])

    def movers(self) -> np.ndarray:
        """Parts ordered by how much their mean rotation varies between clusters (most first)."""
        spread = np.ptp(self.angle_deg, axis=0) + np.ptp(self.translation_A, axis=0) / 10.0
        return np.argsort(-spread, kind="stable")


def load_part_motion(run, n: int) -> dict[str, np.ndarray] | None:
    """``extras/part_motion.npz`` of ``run`` (a :class:`RunDir`) when it matches ``n`` particles."""
    motion = run.load_extra("part_motion")
    if motion is None:
        return None
    rot, trans = motion.get("rotations"), motion.get("translations_A")
    if (
        rot is None
        or trans is None
        or rot.ndim != 4
        or rot.shape[0] != n
        or rot.shape[2:] != (3, 3)
        or trans.shape != rot.shape[:2] + (3,)
    ):
        log.warning("%s: part_motion.npz does not match the run's %d particles; part motion skipped", run.extras, n)
        return None
    return motion


def rotation_angles_deg(rotations: np.ndarray) -> np.ndarray:
    """Angles (degrees) of rotation matrices ``(..., 3, 3)``."""
    tr = np.trace(np.asarray(rotations, np.float64), axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def part_motion_summary(motion: dict[str, np.ndarray], labels: np.ndarray, k: int) -> PartMotion:
    """Mean rotation angle, translation and occupancy of every part over each cluster."""
    rot, trans = motion["rotations"], motion["translations_A"]
    occ = motion.get("occupancy")
    n_parts = rot.shape[1]
    sums = np.zeros((3, k, n_parts))
    for s in progress(range(0, len(labels), _CHUNK), description="part motion", unit="chunk", log_every_s=5.0):
        lab = labels[s : s + _CHUNK]
        np.add.at(sums[0], lab, rotation_angles_deg(rot[s : s + _CHUNK]))
        np.add.at(sums[1], lab, np.linalg.norm(np.asarray(trans[s : s + _CHUNK], np.float64), axis=-1))
        if occ is not None:
            np.add.at(sums[2], lab, np.asarray(occ[s : s + _CHUNK], np.float64))
    counts = np.bincount(labels, minlength=k)
    denom = np.maximum(counts, 1)[:, None]
    return PartMotion(
        angle_deg=sums[0] / denom,
        translation_A=sums[1] / denom,
        occupancy=sums[2] / denom if occ is not None else None,
        counts=counts,
    )


@dataclass
class PartMaps:
    """Part maps written at latent ``z`` (particle ``row``); projections for the report."""

    z: np.ndarray
    row: int
    files: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    projections: list[np.ndarray] = field(default_factory=list)
    level: float | None = None


def parts_script(maps: PartMaps) -> str:
    """ChimeraX commands opening every part map with its own colour at one common level."""
    lines = [
        f"# cryohet analyze: {len(maps.files)} parts at the latent of particle {maps.row} "
        "(open with: chimerax parts.cxc)"
    ]
    colours = part_colours(len(maps.files))
    for i, f in enumerate(maps.files):
        lines.append(f"open {f.name}")
        lines.append(f"volume #{i + 1} level {maps.level or 0.0:.6g} style surface color {colours[i]}")
    lines.append("view")
    return "\n".join(lines) + "\n"


def write_part_maps(model, z: np.ndarray, row: int, folder: Path, protected: list[Path]) -> PartMaps | None:
    """Part maps of ``model`` at ``z`` into ``folder``; None when the method has no parts."""
    volumes = model.part_volumes(np.asarray(z, np.float32))
    if not volumes:
        return None
    folder.mkdir(parents=True, exist_ok=True)  # a fresh folder: analyze writes into a new one each time
    maps = PartMaps(z=np.asarray(z, np.float32), row=int(row))
    total = None
    for i, (name, vol) in enumerate(sorted(volumes.items())):
        vol = np.asarray(vol, np.float32)
        path = ensure_not_input(folder / f"part_{i:02d}.mrc", protected)
        maps.files.append(write_volume(path, vol, model.apix))
        maps.names.append(name)
        maps.projections.append(projections(vol))
        total = vol.astype(np.float64) if total is None else total + vol
    maps.level = suggest_level(total) if total is not None else None
    (folder / "parts.cxc").write_text(parts_script(maps))
    log.info("wrote %d part maps (ChimeraX: %s)", len(maps.files), "parts.cxc")  # the folder may be staged
    return maps
