"""``cryohet train drgnai PARTICLES --out RUN``: DRGN-AI (ab initio: pose search + neural field)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..io.source import ParticleSource
from ..methods.drgnai.config import DrgnaiConfig
from .options import (
    absolute_path,
    config_option,
    contrast_choice,
    examples,
    invert_option,
    particle_source,
    uninvert_data_option,
)
from .training import run_training

__all__ = ["register"]


def drgnai(
    particles: Path = typer.Argument(
        ..., help="Particles with CTF: .star, .cs (poses not needed), or .mrcs with --ctf ctf.pkl."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
    poses: Optional[Path] = config_option(
        ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl (refine/fixed)."
    ),
    ctf: Optional[Path] = config_option(ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl."),
    datadir: Optional[Path] = config_option(
        ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks."
    ),
    ind: Optional[Path] = config_option(
        ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: train on these particles."
    ),
    apix: Optional[float] = config_option(
        ParticleSource, "apix", "--apix", help="Pixel size in Å when the file has none."
    ),
    poses_mode: str = config_option(DrgnaiConfig, "poses_mode", "--poses-mode"),
    zdim: int = config_option(DrgnaiConfig, "zdim", "--zdim", help="Latent dimension (0: homogeneous ab initio)."),
    box: Optional[int] = config_option(DrgnaiConfig, "box", "--box", "-D"),
    pretrain_images: int = config_option(DrgnaiConfig, "pretrain_images", "--pretrain-images"),
    search_images: int = config_option(
        DrgnaiConfig, "search_images", "--search-images", help="Image-searches in all (search epochs = this / N)."
    ),
    epochs_sgd: int = config_option(
        DrgnaiConfig, "epochs_sgd", "--epochs-sgd", "--epochs", help="Joint gradient-descent epochs."
    ),
    latent_init: str = config_option(
        DrgnaiConfig,
        "latent_init",
        "--latent-init",
        help="subspace: seed the latents at the first joint epoch from a PCA of the heterogeneity at the "
        "table's poses (found or given); random: keep the auto-decoded ones.",
    ),
    field_average_epochs: float = config_option(
        DrgnaiConfig,
        "field_average_epochs",
        "--field-average-epochs",
        help="Outputs hold the field's weights averaged over the joint steps, a step this many epochs old "
        "weighing 1/e (0: the last step's).",
    ),
    hidden: int = config_option(DrgnaiConfig, "field.hidden", "--hidden", help="Width of the field's network."),
    clusters: int = config_option(
        DrgnaiConfig, "search.clusters", "--search-clusters", help="Latent clusters the search scores against."
    ),
    base_level: int = config_option(DrgnaiConfig, "search.base_level", "--base-level"),
    search_grid: str = config_option(
        DrgnaiConfig,
        "search.grid_from",
        "--search-grid",
        help="How the search's cached Fourier grids are filled: map (the field's voxel lattice, to its map, the "
        "voxel path: 8x fewer network evaluations) or network (every half-voxel node).",
    ),
    grid_oversample: int = config_option(
        DrgnaiConfig,
        "search.grid_oversample",
        "--grid-oversample",
        help="Sampling of the search's cached grids: 2 (half-voxel) or 1 (the field's voxel).",
    ),
    radius_start: Optional[float] = config_option(
        DrgnaiConfig, "search.radius_start_px", "--radius-start", help="First search band radius, Fourier px."
    ),
    radius_end: Optional[float] = config_option(
        DrgnaiConfig, "search.radius_end_px", "--radius-end", help="Search band radius reached at the end, Fourier px."
    ),
    local_step: Optional[float] = config_option(
        DrgnaiConfig,
        "search.local_step_deg",
        "--local-step",
        help="Joint epochs: refine poses by a local search from this rotation step (degrees; 0: gradient only; "
        "default 2 with --poses-mode refine, 0 in abinit).",
    ),
    lr_field: float = config_option(DrgnaiConfig, "optim.lr_field", "--lr-field", help="Adam rate of the field."),
    batch_size: int = config_option(DrgnaiConfig, "optim.batch_size", "--batch-size", "-b"),
    invert: Optional[bool] = invert_option(DrgnaiConfig),
    uninvert_data: bool = uninvert_data_option(),
    device: str = config_option(DrgnaiConfig, "device", "--device", help="cpu or cuda (cuda:N)."),
    snapshot_every: int = config_option(
        DrgnaiConfig,
        "snapshot_every",
        "--snapshot-every",
        "--checkpoint",
        help="Keep model, latents and poses after every N-th epoch in RUN/epochs/ (cryoDRGN's --checkpoint; "
        "0: none; the last epoch always), for --epoch in analyze, volumes and select.",
    ),
    load: Optional[Path] = config_option(
        DrgnaiConfig, "load", "--load", help="Start from another run's weights (its run directory or model.pt)."
    ),
    amp: bool = config_option(DrgnaiConfig, "amp", "--amp/--no-amp", help="bf16 autocast for the field on CUDA."),
    num_workers: int = config_option(DrgnaiConfig, "num_workers", "--num-workers", help="Data-loading processes."),
    seed: int = config_option(DrgnaiConfig, "seed", "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run in --out."),
) -> None:
    """Train DRGN-AI: pretrain -> hierarchical pose search epochs -> joint gradient descent on
    poses, latents and a neural-field hypervolume. Input poses are not needed (abinit)."""
    from ..methods.drgnai import train_drgnai

    def build() -> DrgnaiConfig:
        source = particle_source(particles, poses, ctf, datadir, ind, apix)
        return DrgnaiConfig(
            data=source,
            out=str(out.expanduser().resolve()),
            poses_mode=poses_mode,
            zdim=zdim,
            box=box,
            pretrain_images=pretrain_images,
            search_images=search_images,
            epochs_sgd=epochs_sgd,
            latent_init=latent_init,
            field_average_epochs=field_average_epochs,
            field={"hidden": hidden},
            search={
                "clusters": clusters,
                "base_level": base_level,
                "grid_from": search_grid,
                "grid_oversample": grid_oversample,
                "radius_start_px": radius_start,
                "radius_end_px": radius_end,
                "local_step_deg": local_step,
            },
            optim={"batch_size": batch_size, "lr_field": lr_field},
            invert=contrast_choice(invert, uninvert_data),
            device=device,
            snapshot_every=snapshot_every,
            load=str(absolute_path(load)) if load is not None else None,
            amp=amp,
            num_workers=num_workers,
            seed=seed,
        )

    run_training(DrgnaiConfig, build, train_drgnai, resume=resume, overwrite=overwrite, command=drgnai)


EXAMPLES = examples(
    "cryohet train drgnai particles.star --out runs/abinit --zdim 8",
    "cryohet train drgnai particles.star -o runs/homo --zdim 0 -D 64",
    "cryohet train drgnai refined.star -o runs/refine --poses-mode refine",
    "cryohet train drgnai particles.star -o runs/abinit --resume --epochs-sgd 40",
)


def register(train_app: typer.Typer) -> None:
    train_app.command("drgnai", epilog=EXAMPLES)(drgnai)
