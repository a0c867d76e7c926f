"""``cryohet convert PARTICLES``: write cryoDRGN pickles and/or a RELION 3.1 STAR file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..console import warnings_to_log
from ..errors import InputError
from ..io.source import ParticleSource
from .options import build_source, config_option, examples, param_default

__all__ = ["register"]


def convert(
    particles: Path = typer.Argument(..., help="Particle file: .star, .cs, .mrcs/.mrc (+ --poses/--ctf) or .txt."),
    poses_out: Optional[Path] = typer.Option(None, "--poses-out", help="Write cryoDRGN poses.pkl (rot, trans/D)."),
    ctf_out: Optional[Path] = typer.Option(None, "--ctf-out", help="Write cryoDRGN ctf.pkl (N, 9)."),
    star_out: Optional[Path] = typer.Option(None, "--star-out", help="Write a RELION 3.1 STAR file with optics."),
    datadir: Optional[Path] = config_option(
        ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks."
    ),
    poses: Optional[Path] = config_option(
        ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl for the particles."
    ),
    ctf: Optional[Path] = config_option(ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl for the particles."),
    ind: Optional[Path] = config_option(
        ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: convert only these particles."
    ),
    passthrough: Optional[Path] = config_option(
        ParticleSource, "passthrough", "--passthrough", help="cryoSPARC passthrough .cs (merged on uid)."
    ),
    apix: Optional[float] = config_option(
        ParticleSource, "apix", "--apix", help="Pixel size in Å/px (when the file has none)."
    ),
    overwrite: bool = typer.Option(
        param_default("cryohet.io.particles:save_converted", "overwrite"),
        "--overwrite",
        help="Replace existing output files.",
    ),
) -> None:
    """Convert poses/CTF between RELION, cryoSPARC and cryoDRGN formats.

    Pickles follow cryoDRGN's layout exactly (cryoDRGN and RECOVAR read them). With
    --ind the outputs hold only the selected particles, in ind order. Stacks that cannot
    be found only cause a warning: conversion does not read pixels. Existing outputs are
    replaced only with --overwrite; an input file never is.
    """
    from ..io.particles import save_converted

    if poses_out is None and ctf_out is None and star_out is None:
        raise InputError("nothing to write: give --poses-out, --ctf-out and/or --star-out")
    source = build_source(
        path=particles, datadir=datadir, poses=poses, ctf=ctf, ind=ind, passthrough=passthrough, apix=apix
    )
    with warnings_to_log():
        meta = source.load(stack_check="warn")
        written = save_converted(meta, poses_out=poses_out, ctf_out=ctf_out, star_out=star_out, overwrite=overwrite)
    for path in written:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command(
        "convert",
        epilog=examples(
            "cryohet convert J42_particles.cs --poses-out poses.pkl --ctf-out ctf.pkl",
            "cryohet convert particles.star --star-out particles_relion31.star",
            "cryohet convert stack.mrcs --poses poses.pkl --ctf ctf.pkl --star-out p.star",
        ),
    )(convert)
