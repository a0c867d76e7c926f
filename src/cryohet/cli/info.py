"""``cryohet info PARTICLES``: what a particle file holds (count, box, optics, CTF, poses, stacks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..console import warnings_to_log
from ..io.source import ParticleSource
from .options import build_source, config_option, examples

if TYPE_CHECKING:
    from ..io.metadata import ParticleMetadata

__all__ = ["register", "warnings_to_log", "summarize"]

_FORMATS = {"star": "RELION STAR", "cs": "cryoSPARC .cs", "mrcs": "MRC stack"}


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _group_names(meta: ParticleMetadata) -> dict[int, str]:
    names: dict[int, str] = {}
    if meta.optics is not None and "rlnOpticsGroupName" in meta.optics.columns:
        for g, nm in zip(meta.optics["rlnOpticsGroup"], meta.optics["rlnOpticsGroupName"]):
            names[int(g)] = str(nm)
    ids = meta.extras.get("exp_group_ids")
    if meta.source_format == "cs" and ids is not None:
        for k, gid in enumerate(ids):
            names[k + 1] = f"exposure group {int(gid)}"
    return names


def summarize(meta: ParticleMetadata, found: list[Path], missing: list[Path]) -> list[Table]:
    """Rich tables describing a particle set (used by ``cryohet info``)."""
    import numpy as np

    fmt = _FORMATS.get(meta.source_format, meta.source_format)
    if meta.source_format == "star":
        fmt += f" {meta.extras.get('star_version', '')}".rstrip()
    summary = Table(title=f"{meta.source}", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value")
    summary.add_row("format", fmt)
    summary.add_row("particles", f"{len(meta):,}")
    summary.add_row("box", f"{meta.box} px" if meta.box > 0 else "unknown (no stack found)")
    px = np.unique(np.round(meta.apix, 5))
    summary.add_row("pixel size", ", ".join(f"{v:.6g}" for v in px[:6]) + " Å/px" + (" ..." if len(px) > 6 else ""))
    summary.add_row("poses", "yes" if meta.has_poses else "no (unknown)")
    summary.add_row("CTF", "yes" if meta.ctf is not None else "no")
    unused = meta.extras.get("unused_optics") or []
    nothing = "none (no beam tilt, higher-order aberrations or anisotropic magnification)"
    summary.add_row("not used", "\n".join(unused) if unused else nothing)
    if meta.source_format == "cs" and meta.extras.get("blob_sign") is not None:
        sign = np.unique(np.asarray(meta.extras["blob_sign"]))
        summary.add_row(
            "blob/sign", ", ".join(f"{v:+g}" for v in sign) + " (used when the images leave the contrast undecided)"
        )
    stacks = f"{len(found)} of {len(meta.image_files)} found"
    if missing:
        stacks += f" (missing e.g. {missing[0]})"
    summary.add_row("stacks", stacks)
    tables = [summary]

    groups = np.asarray(meta.optics_group)
    names = _group_names(meta)
    optics = Table(title="optics groups")
    for col in ("group", "name", "Å/px", "kV", "Cs (mm)", "w", "particles"):
        optics.add_column(col, justify="right" if col != "name" else "left")
    for g in np.unique(groups):
        m = groups == g
        ctf = meta.ctf
        vals = (
            ["-", "-", "-"]
            if ctf is None
            else [
                _fmt(float(np.median(ctf.voltage_kV[m]))),
                _fmt(float(np.median(ctf.cs_mm[m]))),
                _fmt(float(np.median(ctf.amp_contrast[m]))),
            ]
        )
        optics.add_row(
            str(g),
            names.get(int(g), f"opticsGroup{g}"),
            f"{float(np.median(meta.apix[m])):.6g}",
            *vals,
            f"{int(m.sum()):,}",
        )
    tables.append(optics)

    if meta.ctf is not None:
        c = meta.ctf
        mean_df = 0.5 * (c.defocus_u_A + c.defocus_v_A)
        rows = {
            "defocus (mean U,V) Å": mean_df,
            "astigmatism |U-V| Å": np.abs(c.defocus_u_A - c.defocus_v_A),
            "phase shift °": c.phase_shift_deg,
        }
        ctf_table = Table(title="CTF")
        for col in ("", "min", "median", "max"):
            ctf_table.add_column(col, justify="right" if col else "left")
        for name, v in rows.items():
            ctf_table.add_row(name, _fmt(float(v.min())), _fmt(float(np.median(v))), _fmt(float(v.max())))
        tables.append(ctf_table)
    if meta.has_poses and meta.shifts_A is not None:
        r = np.linalg.norm(meta.shifts_A, axis=1)
        shift_table = Table(title="shifts")
        for col in ("", "min", "median", "max"):
            shift_table.add_column(col, justify="right" if col else "left")
        shift_table.add_row("|origin| Å", _fmt(float(r.min())), _fmt(float(np.median(r))), _fmt(float(r.max())))
        tables.append(shift_table)
    return tables


def info(
    particles: Path = typer.Argument(..., help="Particle file: .star, .cs, .mrcs/.mrc or a .txt list of stacks."),
    datadir: Optional[Path] = config_option(
        ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks."
    ),
    poses: Optional[Path] = config_option(
        ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl to use instead of the file's poses."
    ),
    ctf: Optional[Path] = config_option(
        ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl to use instead of the file's CTF."
    ),
    ind: Optional[Path] = config_option(
        ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: keep only these particles."
    ),
    passthrough: Optional[Path] = config_option(
        ParticleSource, "passthrough", "--passthrough", help="cryoSPARC passthrough .cs (merged on uid)."
    ),
    apix: Optional[float] = config_option(
        ParticleSource, "apix", "--apix", help="Pixel size in Å/px (when the file has none)."
    ),
) -> None:
    """Print particle count, box, pixel size, optics groups, CTF ranges, poses and stacks."""
    source = build_source(
        path=particles, datadir=datadir, poses=poses, ctf=ctf, ind=ind, passthrough=passthrough, apix=apix
    )
    with warnings_to_log():
        meta = source.load(stack_check="warn")  # missing stacks: a warning; present ones are checked
    console = Console()
    for table in summarize(meta, meta.extras.get("stacks_found", []), meta.extras.get("stacks_missing", [])):
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command(
        "info",
        epilog=examples(
            "cryohet info particles.star",
            "cryohet info J42_particles.cs --passthrough J40_passthrough_particles.cs",
            "cryohet info particles.mrcs --poses poses.pkl --ctf ctf.pkl",
        ),
    )(info)
