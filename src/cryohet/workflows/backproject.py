"""``cryohet backproject`` as a Python API: particles in, map + half maps + FSC out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..console import get_logger
from ..data.contrast import decide_invert
from ..data.dataset import ParticleDataset
from ..errors import InputError
from ..evaluation.fsc_report import compare_maps, plot_report, write_report_json
from ..io.mrc import write_volume
from ..io.outputs import check_output, staged_files
from ..io.particles import input_files
from ..metrics.map_checks import skewness
from ..reconstruction.from_particles import dataset_pixel_size, reconstruct_particles
from ..reconstruction.half_maps import HalfMapResult
from .config import BackprojectConfig

__all__ = ["BackprojectConfig", "backproject_to_files", "output_paths"]

log = get_logger("backproject")


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


#: A map's skewness below this is "mostly negative": clear of the noise of a band-limited map
#: (simulated maps measure +13 to +18, the same with the wrong sign -13 to -18).
HOLLOW_SKEWNESS = -0.5


def check_map_sign(result: HalfMapResult, invert: bool, decided: bool, quiet: bool = False) -> bool:
    """The contrast after looking at the map; the maps are negated in place when it changes.

    Backprojection is linear in the images, so the map with the other contrast is exactly
    the negated map. When the images left the sign undecided (few or very noisy images,
    no ``--invert/--no-invert``), a mostly negative map decides it: the maps are negated
    and the decision logged. When it was decided (by the user or the images), a mostly
    negative map is one warning line (none when ``quiet``: the images already warned).
    """
    skew = skewness(result.full.cpu().numpy())
    if skew >= HOLLOW_SKEWNESS:
        return invert
    if decided:
        if quiet:
            return invert
        log.warning("the map goes mostly negative (skewness %.1f): the contrast sign is probably wrong; run again "
                    "with %s", skew, "--no-invert" if invert else "--invert")  # fmt: skip
        return invert
    for vol in (result.full, result.half1, result.half2):
        vol.neg_()
    log.warning("contrast: the map went mostly negative (skewness %.1f): the images have protein %s; the maps "
                "are written %s (as with %s)", skew, "bright" if invert else "dark",
                "as they are" if invert else "inverted", "--no-invert" if invert else "--invert")  # fmt: skip
    return not invert


def backproject_to_files(cfg: BackprojectConfig) -> dict[str, Any]:
    """Reconstruct and write the maps; returns a summary (paths, sizes, resolution)."""
    paths = output_paths(cfg.out)
    meta = cfg.data.load()
    inputs = input_files(meta)
    for p in paths.values():
        check_output(p, inputs, overwrite=cfg.overwrite)
    invert, check = decide_invert(meta, cfg.invert, cfg.box, cfg.seed)
    dataset = ParticleDataset(meta, box=cfg.box, invert=invert, normalize=False)
    apix = dataset_pixel_size(dataset)
    log.info("backprojecting %d particles at box %d, %.4g Å/px", len(dataset), dataset.box, apix)
    result = reconstruct_particles(dataset, batch_size=cfg.batch_size, device=cfg.device, seed=cfg.seed)
    contradicted = cfg.invert is not None and check.sign != 0 and check.needs_invert != invert  # warned already
    invert = check_map_sign(result, invert, decided=cfg.invert is not None or check.sign != 0, quiet=contradicted)
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
        "inverted": invert,
    }
