"""``cryohet backproject`` as a Python API: particles in, map + half maps + FSC out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config import StrictModel
from ..console import get_logger
from ..data.dataset import ParticleDataset
from ..errors import InputError
from ..evaluation.fsc_report import compare_maps, plot_report, write_report_json
from ..io.mrc import write_volume
from ..io.outputs import check_output, staged_files
from ..io.particles import ParticleSource, input_files
from ..reconstruction.from_particles import dataset_pixel_size, reconstruct_particles

__all__ = ["BackprojectConfig", "backproject_to_files", "output_paths"]

log = get_logger("backproject")


class BackprojectConfig(StrictModel):
    """Inputs and options of a homogeneous reconstruction."""

    data: ParticleSource
    out: Path
    box: int | None = Field(None, ge=8)
    invert: bool = False
    batch_size: int = Field(256, gt=0)
    device: str = "cpu"
    seed: int = 0
    overwrite: bool = False


def output_paths(out: Path) -> dict[str, Path]:
    """``map.mrc`` -> map, ``map_half1.mrc``, ``map_half2.mrc``, ``map_fsc.json``, ``map_fsc.png``."""
    if out.suffix and out.suffix.lower() != ".mrc":
        raise InputError(f"{out}: the output map must be a .mrc file")
    stem = out.with_suffix("")
    return {
        "map": stem.with_suffix(".mrc"),
        "half1": stem.parent / f"{stem.name}_half1.mrc",
        "half2": stem.parent / f"{stem.name}_half2.mrc",
        "fsc_json": stem.parent / f"{stem.name}_fsc.json",
        "fsc_png": stem.parent / f"{stem.name}_fsc.png",
    }


def backproject_to_files(cfg: BackprojectConfig) -> dict[str, Any]:
    """Reconstruct and write the maps; returns a summary (paths, sizes, resolution)."""
    paths = output_paths(cfg.out)
    meta = cfg.data.load()
    inputs = input_files(meta)
    for p in paths.values():
        check_output(p, inputs, overwrite=cfg.overwrite)
    dataset = ParticleDataset(meta, box=cfg.box, invert=cfg.invert, normalize=False)
    apix = dataset_pixel_size(dataset)
    log.info("backprojecting %d particles at box %d, %.4g Å/px", len(dataset), dataset.box, apix)
    result = reconstruct_particles(dataset, batch_size=cfg.batch_size, device=cfg.device, seed=cfg.seed)
    report = compare_maps(result.half1.cpu().numpy(), result.half2.cpu().numpy(), apix)
    with staged_files(paths.values()) as tmps:  # the five files together, or none of them
        tmp = dict(zip(paths, tmps))
        write_volume(tmp["map"], result.full.cpu().numpy(), apix)
        write_volume(tmp["half1"], result.half1.cpu().numpy(), apix)
        write_volume(tmp["half2"], result.half2.cpu().numpy(), apix)
        write_report_json(report, tmp["fsc_json"])
        plot_report(report, tmp["fsc_png"])
    res = result.resolution_A(apix)  # the one rule: == report.resolution(0.143), same FSC
    return {
        "map": paths["map"],
        "n_particles": len(dataset),
        "box": dataset.box,
        "apix": apix,
        "resolution_0143": f"{res:.2f} Å"
        if math.isfinite(res) and report.crosses(0.143)
        else f"<= Nyquist ({2 * apix:.2f} Å)",
        "half_map_auc": report.cryobench.auc,
    }
