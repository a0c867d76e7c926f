"""``cryohet downsample PARTICLES -D 64 --out DIR``: Fourier-crop a particle set to a new box."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..console import warnings_to_log
from ..io.source import ParticleSource
from .options import build_source, config_option, examples, param_default

__all__ = ["register"]

_API = "cryohet.data.downsample:downsample_particles"  # the options' defaults are its own


def downsample(
    particles: Path = typer.Argument(..., help="Particle file: .star, .cs, .mrcs/.mrc or .txt."),
    box: int = typer.Option(..., "-D", "--box", min=2, help="New box size in pixels (smaller than the current box)."),
    out: Path = typer.Option(..., "--out", help="Output folder for particles.D.mrcs and particles.D.star."),
    chunk: int = typer.Option(
        param_default(_API, "chunk"),
        "--chunk",
        min=1,
        help="Images read and written at a time (memory use).",
    ),
    datadir: Optional[Path] = config_option(
        ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks."
    ),
    poses: Optional[Path] = config_option(
        ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl for the particles."
    ),
    ctf: Optional[Path] = config_option(ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl for the particles."),
    ind: Optional[Path] = config_option(
        ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: keep only these particles."
    ),
    passthrough: Optional[Path] = config_option(
        ParticleSource, "passthrough", "--passthrough", help="cryoSPARC passthrough .cs (merged on uid)."
    ),
    apix: Optional[float] = config_option(
        ParticleSource, "apix", "--apix", help="Pixel size in Å/px (when the file has none)."
    ),
    overwrite: bool = typer.Option(
        param_default(_API, "overwrite"),
        "--overwrite",
        help="Replace an existing non-empty output folder (as a whole).",
    ),
) -> None:
    """Write DIR/particles.D.mrcs and a matching RELION 3.1 DIR/particles.D.star.

    Streams chunks (memory does not grow with the stack). The pixel size becomes
    apix * D0 / D; poses, CTF and shifts in Å are unchanged. Never overwrites inputs;
    an existing non-empty DIR is replaced only with --overwrite, and then as a whole.
    """
    from ..data.downsample import downsample_particles

    source = build_source(
        path=particles, datadir=datadir, poses=poses, ctf=ctf, ind=ind, passthrough=passthrough, apix=apix
    )
    with warnings_to_log():
        meta = source.load(stack_check="error")
        stack, star, _ = downsample_particles(meta, box, out, chunk=chunk, overwrite=overwrite)
    typer.echo(f"wrote {stack}")
    typer.echo(f"wrote {star}")


def register(app: typer.Typer) -> None:
    app.command(
        "downsample",
        epilog=examples(
            "cryohet downsample particles.star -D 128 --out particles_128",
            "cryohet downsample J42_particles.cs -D 64 --out ds64 --chunk 500",
        ),
    )(downsample)
