"""``cryohet backproject PARTICLES --out map.mrc``: homogeneous reconstruction with given poses."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def backproject(
    particles: Path = typer.Argument(..., help="Particles with poses: .star, .cs, or .mrcs with --poses/--ctf."),
    out: Path = typer.Option(..., "--out", "-o", help="Output map (.mrc); half maps and FSC are written beside it."),
    poses: Optional[Path] = typer.Option(None, "--poses", help="cryoDRGN poses.pkl."),
    ctf: Optional[Path] = typer.Option(None, "--ctf", help="cryoDRGN ctf.pkl."),
    datadir: Optional[Path] = typer.Option(None, "--datadir", help="Folder holding the image stacks."),
    ind: Optional[Path] = typer.Option(None, "--ind", help="cryoDRGN ind.pkl: use only these particles."),
    apix: Optional[float] = typer.Option(None, "--apix", help="Pixel size in Å when the file has none."),
    box: Optional[int] = typer.Option(None, "--box", "-D", help="Reconstruct at this box (Fourier-cropped images)."),
    invert: bool = typer.Option(False, "--invert", help="Images have dark protein (multiply by -1)."),
    batch_size: int = typer.Option(256, "--batch-size", "-b"),
    device: str = typer.Option("cpu", "--device"),
    seed: int = typer.Option(0, "--seed", help="Seed of the half-set split when the STAR file has no rlnRandomSubset."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output maps."),
) -> None:
    """Wiener-filtered, CTF-corrected Fourier backprojection; writes the map, half maps and their FSC.

    Outputs: OUT (full map), OUT_half1.mrc, OUT_half2.mrc, OUT_fsc.json and OUT_fsc.png
    (half-map FSC, resolution at 0.143). Maps carry the images' pixel size.
    """
    from ..io.particles import ParticleSource
    from ..workflows.backproject import BackprojectConfig, backproject_to_files

    cfg = BackprojectConfig(
        data=ParticleSource.build(path=particles, poses=poses, ctf=ctf, datadir=datadir, ind=ind, apix=apix),
        out=out,
        box=box,
        invert=invert,
        batch_size=batch_size,
        device=device,
        seed=seed,
        overwrite=overwrite,
    )
    summary = backproject_to_files(cfg)
    typer.echo(
        f"wrote {summary['map']} ({summary['n_particles']} particles, box {summary['box']}, "
        f"{summary['apix']:.4g} Å/px; half-map FSC 0.143 at {summary['resolution_0143']})"
    )


def register(app: typer.Typer) -> None:
    app.command("backproject")(backproject)
