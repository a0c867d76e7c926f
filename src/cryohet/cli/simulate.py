"""``cryohet simulate PRESET --out DIR``: a particle dataset with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from ..simulate.catalog import PRESETS
from ..simulate.config import SimulationConfig
from .options import config_error, config_option, examples

__all__ = ["register"]


def simulate(
    preset: str = typer.Argument(..., help=f"One of: {', '.join(PRESETS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; must be empty unless --overwrite)."),
    n_images: int = config_option(SimulationConfig, "n_images", "--n-images", "-n", help="Number of particle images."),
    box: int = config_option(SimulationConfig, "box", "--box", "-D"),
    apix: Optional[float] = config_option(
        SimulationConfig,
        "apix",
        "--apix",
        help="Pixel size in Å (default: preset box in Å / D; CryoBench IgG: 3 Å at D=128).",
    ),
    snr: float = config_option(SimulationConfig, "snr", "--snr", help="Signal-to-noise ratio (CryoBench: 0.01)."),
    seed: int = config_option(SimulationConfig, "seed", "--seed", help="Random seed."),
    n_states: Optional[int] = config_option(
        SimulationConfig,
        "n_states",
        "--n-states",
        help="Number of states (default: the preset's: "
        + ", ".join(f"{k} {v.default_states}" for k, v in PRESETS.items() if k != "custom")
        + ").",
    ),
    max_shift: float = config_option(
        SimulationConfig, "max_shift_px", "--max-shift", help="Shifts uniform within ± this many pixels."
    ),
    model: Optional[Path] = config_option(
        SimulationConfig, "model", "--model", help="Atomic model (.pdb/.cif) for 'custom'."
    ),
    moving: Optional[str] = config_option(SimulationConfig, "moving", "--moving"),
    axis: Optional[str] = config_option(SimulationConfig, "axis", "--axis"),
    angle_min: float = config_option(
        SimulationConfig, "angle_min_deg", "--angle-min", help="Hinge dihedral range start (degrees)."
    ),
    angle_max: float = config_option(
        SimulationConfig, "angle_max_deg", "--angle-max", help="Hinge dihedral range end (degrees)."
    ),
    overwrite: bool = config_option(
        SimulationConfig, "overwrite", "--overwrite", help="Replace a non-empty output folder (as a whole)."
    ),
    device: str = config_option(
        SimulationConfig,
        "device",
        "--device",
        help="Render on cpu or cuda (cuda:N); CryoBench-sized sets want a GPU.",
    ),
) -> None:
    """Simulate particles (Fourier-slice projections, RELION CTF, shifts, white noise) with ground truth.

    Writes DIR/particles.mrcs, DIR/particles.star (RELION 3.1), DIR/meta.json and
    DIR/gt/ (state_NNN.mrc per state, labels.npy, gt_latents.npy, mask.mrc).
    """
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
        raise config_error(err, SimulationConfig) from None
    simulate_dataset(cfg)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command(
        "simulate",
        epilog=examples(
            "cryohet simulate igg-1d --out data/igg1d -n 10000 -D 128",
            "cryohet simulate assembly -o data/assembly --snr 0.01 --device cuda",
            "cryohet simulate custom --model fab.pdb --apix 3 -o data/fab",
        ),
    )(simulate)
