"""``cryohet volumes RUN [--z Z.npy] --out DIR [--flip]``: one map per latent row (or at the
mean latent), for any method."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import examples, param_default

__all__ = ["register"]

_write_volumes = "cryohet.analysis.volumes:write_volumes"  # its defaults are the options'


def volumes(
    run: Path = typer.Argument(..., help="Run directory of any method."),
    z: Optional[Path] = typer.Option(
        None,
        "--z",
        help="Latents: .npy of shape (zdim,) or (n, zdim), or a text file, one row per line "
        "(default: one map at the mean latent; a homogeneous run's map).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (vol_000.mrc, vol_001.mrc ... in row order)."),
    box: Optional[int] = typer.Option(
        param_default(_write_volumes, "box"), "--box", "-D", help="Box of the maps (default: the run's)."
    ),
    apix: Optional[float] = typer.Option(
        param_default(_write_volumes, "apix"), "--apix", help="Voxel size in Å (default: the run's)."
    ),
    parts: bool = typer.Option(
        param_default(_write_volumes, "parts"),
        "--parts",
        help="Also per-part maps and a ChimeraX script parts.cxc (part-aware methods).",
    ),
    flip: bool = typer.Option(
        param_default(_write_volumes, "flip"),
        "--flip",
        help="Write the mirror image of every map (the other hand; goes with cryohet export --flip).",
    ),
    device: str = typer.Option(
        param_default(_write_volumes, "device"), "--device", help="Device on which the method decodes volumes."
    ),
    overwrite: bool = typer.Option(
        param_default(_write_volumes, "overwrite"),
        "--overwrite",
        help="Replace an existing non-empty output folder (as a whole).",
    ),
    allow_unfinished: bool = typer.Option(
        param_default(_write_volumes, "allow_unfinished"),
        "--allow-unfinished",
        help="Use a run that is unfinished (still training, killed or failed) as it is.",
    ),
) -> None:
    """Decode volumes at the given latents (default: the mean latent) through the run's method.

    Without --z, one map (vol_000.mrc) at the mean of the run's
    latents: for a homogeneous run, its single map. --flip mirrors every
    map (and part map) through the box centre along z: the hand of an ab
    initio reconstruction is arbitrary, and the mirrored map goes with the
    poses of cryohet export --flip. OUT is written fresh: an existing
    non-empty folder is replaced only with --overwrite, and then as a
    whole (no old map remains).
    """
    from ..analysis.volumes import read_latents_file, write_volumes

    latents = read_latents_file(z) if z is not None else None
    written = write_volumes(
        run, latents, out, box=box, apix=apix, parts=parts, inputs=[z] if z is not None else [], device=device,
        overwrite=overwrite, allow_unfinished=allow_unfinished, flip=flip,
    )  # fmt: skip
    n_vol = 1 if latents is None else len(latents)
    typer.echo(
        f"wrote {n_vol} {'mirrored ' if flip else ''}volume(s) to {out}"
        + (" (at the mean latent)" if latents is None else "")
        + (f" and {len(written) - n_vol - 1} part maps + parts.cxc" if parts else "")
    )


def register(app: typer.Typer) -> None:
    app.command(
        "volumes",
        epilog=examples(
            "cryohet volumes runs/spire --z z_points.npy --out runs/spire/vols",
            "cryohet volumes runs/spire --z z.txt -o vols --parts --device cuda",
            "cryohet volumes runs/homog --out runs/homog/map",
            "cryohet volumes runs/spire --out runs/spire/mean_flipped --flip",
        ),
    )(volumes)
