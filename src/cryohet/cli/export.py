"""``cryohet export RUN --out particles.star|particles.cs|poses.pkl [--flip]``: a run's poses in the user's format."""

from __future__ import annotations

from pathlib import Path

import typer

from ..analysis.config import ExportConfig
from .options import build_config, config_option, examples

__all__ = ["register"]


def export(
    run: Path = typer.Argument(..., help="Run directory of any method that used or estimated poses."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="particles.star (RELION), particles.cs (cryoSPARC) or poses.pkl (cryoDRGN)."
    ),
    flip: bool = config_option(
        ExportConfig, "flip", "--flip", help="Poses of the mirrored map (the other hand; cryohet volumes --flip)."
    ),
    overwrite: bool = config_option(ExportConfig, "overwrite", "--overwrite", help="Replace existing output files."),
    allow_unfinished: bool = config_option(
        ExportConfig,
        "allow_unfinished",
        "--allow-unfinished",
        help="Use a run that is unfinished (still training, killed or failed) as it is.",
    ),
) -> None:
    """Write the run's poses back into its particle file, in the user's format.

    One row per particle of the run (with --ind, only those rows), in the
    order of the run's input. .star: the run's STAR file with every column
    and its optics table kept, rlnAngleRot/Tilt/Psi and
    rlnOriginXAngst/YAngst replaced (a .cs or stack input gives a STAR built
    as cryohet convert builds it). .cs: the source .cs rows with
    alignments3D/pose and alignments3D/shift replaced (needs a .cs input; a
    passthrough input also gives OUT_passthrough.cs). .pkl: cryoDRGN
    poses.pkl (rot, trans in fractions of the box). --flip writes the poses
    that go with the mirrored map of cryohet volumes --flip.
    """
    from ..analysis.export import export_poses

    cfg = build_config(
        ExportConfig, run=run, out=out, flip=flip, overwrite=overwrite, allow_unfinished=allow_unfinished
    )
    done = export_poses(cfg)
    typer.echo(f"wrote the poses of {done.n} particles{' (mirrored hand)' if done.flip else ''} to {done.out}")
    for extra in done.extra_files:
        typer.echo(f"wrote the matching passthrough rows to {extra}")


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        epilog=examples(
            "cryohet export runs/abinitio --out particles_abinitio.star",
            "cryohet export runs/abinitio --out J42_abinitio.cs --flip",
            "cryohet export runs/abinitio --out poses.pkl",
        ),
    )(export)
