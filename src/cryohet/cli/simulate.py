"""``cryohet simulate PRESET --out DIR``: a particle dataset with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from ..config import validation_message
from ..errors import ConfigError
from ..simulate.presets import PRESETS

__all__ = ["register"]


def simulate(
    preset: str = typer.Argument(..., help=f"One of: {', '.join(PRESETS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; must be empty)."),
    n_images: int = typer.Option(2000, "--n-images", "-n", help="Number of particle images."),
    box: int = typer.Option(64, "--box", "-D", help="Image size in pixels (even)."),
    apix: Optional[float] = typer.Option(
        None, "--apix", help="Pixel size in Å (default: preset box in Å / D; CryoBench IgG: 3 Å at D=128)."
    ),
    snr: float = typer.Option(0.05, "--snr", help="Signal-to-noise ratio (CryoBench: 0.01)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    n_states: Optional[int] = typer.Option(None, "--n-states", help="Number of states (default: the preset's)."),
    max_shift: float = typer.Option(4.0, "--max-shift", help="Shifts uniform within ± this many pixels."),
    model: Optional[Path] = typer.Option(None, "--model", help="Atomic model (.pdb/.cif) for 'custom'."),
    moving: Optional[str] = typer.Option(None, "--moving", help="custom hinge: moving atoms, e.g. 'L,H:1-230'."),
    axis: Optional[str] = typer.Option(
        None, "--axis", help="custom hinge: axis through two CA atoms, e.g. 'H:230,H:239'."
    ),
    angle_min: float = typer.Option(0.0, "--angle-min", help="Hinge dihedral range start (degrees)."),
    angle_max: float = typer.Option(360.0, "--angle-max", help="Hinge dihedral range end (degrees)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow writing into a non-empty folder."),
    device: str = typer.Option(
        "cpu", "--device", help="Render on cpu or cuda (cuda:N); CryoBench-sized sets want a GPU."
    ),
) -> None:
    """Simulate particles (Fourier-slice projections, RELION CTF, shifts, white noise) with ground truth.

    Writes DIR/particles.mrcs, DIR/particles.star (RELION 3.1), DIR/meta.json and
    DIR/gt/ (state_NNN.mrc per state, labels.npy, gt_latents.npy, mask.mrc).
    """
    from ..simulate.config import SimulationConfig
    from ..simulate.simulator import simulate_dataset

    try:
        cfg = SimulationConfig(
            preset=preset,
            out=out,
            n_images=n_images,
            box=box,
            apix=apix,
            snr=snr,
            seed=seed,
            n_states=n_states,
            max_shift_px=max_shift,
            model=model,
            moving=moving,
            axis=axis,
            angle_min_deg=angle_min,
            angle_max_deg=angle_max,
            overwrite=overwrite,
            device=device,
        )
    except ValidationError as err:
        raise ConfigError(validation_message(err)) from None
    simulate_dataset(cfg)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
