"""``cryohet volumes RUN [-z 0.1 0.2 … | --zfile Z.npy] --out DIR [--flip]``: one map per latent row (or at the
mean latent), for any method."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import epoch_option, examples, param_default

__all__ = ["register"]

_write_volumes = "cryohet.analysis.volumes:write_volumes"  # its defaults are the options'


def _latents_from(z: str | None, zfile: Path | None, extra: list[str]):
    """Latents of ``-z`` (numbers, cryoDRGN's ``eval_vol -z``, or a file) or ``--zfile``; None: the mean."""
    import numpy as np

    from ..analysis.volumes import read_latents_file
    from ..errors import ConfigError

    if z is not None and zfile is not None:
        raise ConfigError("give -z or --zfile, not both")
    values = ([z] if z is not None else []) + list(extra)
    if values:
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = None
        if numbers is not None:
            return np.asarray([numbers], dtype=np.float32), None
        if extra:
            raise ConfigError(f"unexpected arguments {' '.join(extra)} (-z takes numbers, or one latents file)")
        zfile = Path(z)
    if zfile is None:
        return None, None
    return read_latents_file(zfile), zfile


def volumes(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="Run directory of any method."),
    z: Optional[str] = typer.Option(
        None,
        "-z",
        "--z",
        help="Latent values, as cryoDRGN's eval_vol -z (-z 0.1 -0.2 0.3: one map), or a latents file "
        "(default: one map at the mean latent; a homogeneous run's map).",
    ),
    zfile: Optional[Path] = typer.Option(
        None, "--zfile", help="Latents: .npy of shape (zdim,) or (n, zdim), or a text file, one row per line."
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
    epoch: Optional[int] = epoch_option(
        _write_volumes, "Decode with the run as it was after this epoch (its snapshot in RUN/epochs/)."
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
    from ..analysis.volumes import write_volumes

    latents, zpath = _latents_from(z, zfile, ctx.args)
    written = write_volumes(
        run, latents, out, box=box, apix=apix, parts=parts, inputs=[zpath] if zpath is not None else [], device=device,
        overwrite=overwrite, allow_unfinished=allow_unfinished, flip=flip, epoch=epoch,
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
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        epilog=examples(
            "cryohet volumes runs/spire --zfile z_points.npy --out runs/spire/vols",
            "cryohet volumes runs/drgnai -z 0.5 -1.2 0.3 0.0 -o vol_at_z",
            "cryohet volumes runs/spire --z z.txt -o vols --parts --device cuda",
            "cryohet volumes runs/homog --out runs/homog/map",
            "cryohet volumes runs/spire --out runs/spire/mean_flipped --flip",
        ),
    )(volumes)
