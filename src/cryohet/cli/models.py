"""``cryohet models RUN [--z Z.npy] --out DIR``: atomic models at latents (cryoSPHERE runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import examples

__all__ = ["register"]


def models(
    run: Path = typer.Argument(..., help="Run directory of a method that moves an atomic model (cryoSPHERE)."),
    z: Optional[Path] = typer.Option(
        None, "--z", help="Latents: .npy of shape (zdim,) or (n, zdim), or a text file (default: the mean latent)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (model_000.pdb, model_001.pdb ... in row order)."),
    device: str = typer.Option("cpu", "--device", help="Device on which the method decodes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty output folder."),
    allow_unfinished: bool = typer.Option(
        False, "--allow-unfinished", help="Use a run that is unfinished (still training, killed or failed) as it is."
    ),
) -> None:
    """Write one atomic model per latent row: every atom of the run's input model moved by the
    method at that latent, in the input model's frame, chains, residue numbers and B-factors
    kept (mmCIF when the input was mmCIF). Several rows also go into series.pdb, one file of
    models that ChimeraX plays (models.cxc)."""
    from ..analysis.models import write_models
    from ..analysis.volumes import read_latents_file

    latents = read_latents_file(z) if z is not None else None
    write_models(
        run, latents, out, inputs=[z] if z is not None else [], device=device, overwrite=overwrite,
        allow_unfinished=allow_unfinished,
    )  # fmt: skip
    n = 1 if latents is None else len(latents)
    typer.echo(f"wrote {n} model(s) to {out}" + (" (at the mean latent)" if latents is None else ""))


def register(app: typer.Typer) -> None:
    app.command(
        "models",
        epilog=examples(
            "cryohet models runs/sphere --out models_mean",
            "cryohet models runs/sphere --z states_z.npy --out models",
        ),
    )(models)
