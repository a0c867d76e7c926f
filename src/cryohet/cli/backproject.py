"""``cryohet backproject PARTICLES --out map.mrc``: homogeneous reconstruction with given poses."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..io.source import ParticleSource
from ..workflows.config import BackprojectConfig
from .options import build_source, config_option, contrast_choice, examples, invert_option, uninvert_data_option

__all__ = ["register"]


def backproject(
    particles: Path = typer.Argument(..., help="Particles with poses: .star, .cs, or .mrcs with --poses/--ctf."),
    out: Path = typer.Option(..., "--out", "-o", help="Output map (.mrc); half maps and FSC are written beside it."),
    poses: Optional[Path] = config_option(ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl."),
    ctf: Optional[Path] = config_option(ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl."),
    datadir: Optional[Path] = config_option(
        ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks."
    ),
    ind: Optional[Path] = config_option(
        ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: use only these particles."
    ),
    apix: Optional[float] = config_option(
        ParticleSource, "apix", "--apix", help="Pixel size in Å when the file has none."
    ),
    box: Optional[int] = config_option(
        BackprojectConfig, "box", "--box", "-D", help="Reconstruct at this box (Fourier-cropped images)."
    ),
    invert: Optional[bool] = invert_option(BackprojectConfig),
    uninvert_data: bool = uninvert_data_option(),
    batch_size: int = config_option(BackprojectConfig, "batch_size", "--batch-size", "-b"),
    device: str = config_option(BackprojectConfig, "device", "--device"),
    seed: int = config_option(
        BackprojectConfig,
        "seed",
        "--seed",
        help="Seed of the half-set split when the STAR file has no rlnRandomSubset.",
    ),
    overwrite: bool = config_option(
        BackprojectConfig, "overwrite", "--overwrite", help="Replace existing output maps."
    ),
) -> None:
    """Wiener-filtered, CTF-corrected Fourier backprojection; writes the map, half maps and their FSC.

    Outputs: OUT (full map), OUT_half1.mrc, OUT_half2.mrc, OUT_fsc.json and OUT_fsc.png
    (half-map FSC, resolution at 0.143). Maps carry the images' pixel size and a soft
    spherical edge (1 to 0.4 D from the centre, 0 at the box edge). The memory needed
    (about 100 bytes per voxel of the D^3 map) is logged and checked before the first image
    is read; use -D to reconstruct at a smaller box when it does not fit.
    """
    from ..workflows.backproject import backproject_to_files

    cfg = BackprojectConfig(
        data=build_source(path=particles, poses=poses, ctf=ctf, datadir=datadir, ind=ind, apix=apix),
        out=out,
        box=box,
        invert=contrast_choice(invert, uninvert_data),
        batch_size=batch_size,
        device=device,
        seed=seed,
        overwrite=overwrite,
    )
    summary = backproject_to_files(cfg)
    typer.echo(
        f"wrote {summary['map']} ({summary['n_particles']} particles, box {summary['box']}, "
        f"{summary['apix']:.4g} Å/px, {'inverted' if summary['inverted'] else 'not inverted'}; "
        f"half-map FSC 0.143 at {summary['resolution_0143']})"
    )


def register(app: typer.Typer) -> None:
    app.command(
        "backproject",
        epilog=examples(
            "cryohet backproject particles.star --out consensus.mrc",
            "cryohet backproject stack.mrcs --poses poses.pkl --ctf ctf.pkl -o map.mrc",
            "cryohet backproject particles.star -o map.mrc -D 128 --device cuda",
            "cryohet backproject dark_protein.star -o map.mrc --invert",
        ),
    )(backproject)
