"""``cryohet train spire PARTICLES --out RUN``: CryoSPIRE (part-aware Gaussian mixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..io.source import ParticleSource
from ..methods.spire.config import SpireConfig
from .options import (
    config_option,
    contrast_choice,
    examples,
    invert_option,
    particle_source,
    uninvert_data_option,
)
from .training import run_training

__all__ = ["register"]


def spire(
    particles: Path = typer.Argument(
        ..., help="Particles with poses and CTF: .star, .cs, or .mrcs with --poses/--ctf."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
    poses: Optional[Path] = config_option(ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl."),
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
    box: Optional[int] = config_option(SpireConfig, "box", "--box", "-D"),
    init_map: Optional[Path] = config_option(SpireConfig, "init_map", "--init-map"),
    zdim: int = config_option(SpireConfig, "zdim", "--zdim", help="Latent dimension."),
    gaussians: Optional[int] = config_option(
        SpireConfig, "stage_b.gaussians", "--gaussians", help="Stage-B Gaussians (default: 1.2 per protein voxel)."
    ),
    coarse_gaussians: Optional[int] = config_option(
        SpireConfig,
        "stage_a.gaussians",
        "--coarse-gaussians",
        help="Stage-A Gaussians (default: 0.3 per protein voxel).",
    ),
    parts: Optional[int] = config_option(SpireConfig, "parts", "--parts"),
    epochs_a: int = config_option(SpireConfig, "stage_a.epochs", "--epochs-a", help="Stage-A epochs (part discovery)."),
    epochs_b: int = config_option(SpireConfig, "stage_b.epochs", "--epochs-b", help="Stage-B epochs."),
    batch_size: int = config_option(SpireConfig, "optim.batch_size", "--batch-size", "-b"),
    decoder: str = config_option(
        SpireConfig,
        "stage_b.decoder",
        "--decoder",
        help="Per-Gaussian decoder: factorized (fast) or mlp (paper).",
    ),
    no_anchor_motion: bool = typer.Option(False, "--no-anchor-motion", help="Ablation: no rigid part motion."),
    positional_encoding: bool = config_option(SpireConfig, "stage_a.positional_encoding", "--positional-encoding"),
    init_regions: int = config_option(
        SpireConfig,
        "init_regions",
        "--init-regions",
        help="Start latents from the images' fitted occupancy of this many regions of the consensus; 0: random.",
    ),
    latent_search: int = config_option(
        SpireConfig,
        "latent_search",
        "--latent-search",
        help="Candidates of the discrete latent search (end of stage A, last quarter of stage B); 0: off.",
    ),
    search_every: int = config_option(
        SpireConfig,
        "search_every",
        "--search-every",
        help="Stage B: also search every this many epochs before the last quarter (hard-EM rounds); 0: once.",
    ),
    search_band: float = config_option(
        SpireConfig, "search_band", "--search-band", help="Score search candidates below this fraction of Nyquist."
    ),
    lambda_occ: float = config_option(
        SpireConfig, "lambda_occ", "--lambda-occ", help="Binary-occupancy prior weight κ (stage B); 0: off."
    ),
    lambda_z: float = config_option(SpireConfig, "lambda_z", "--lambda-z"),
    lambda_f: float = config_option(SpireConfig, "lambda_f", "--lambda-f"),
    invert: Optional[bool] = invert_option(SpireConfig),
    uninvert_data: bool = uninvert_data_option(),
    device: str = config_option(SpireConfig, "device", "--device", help="cpu or cuda (cuda:N)."),
    snapshot_every: int = config_option(
        SpireConfig,
        "snapshot_every",
        "--snapshot-every",
        "--checkpoint",
        help="Keep model, latents and poses after every N-th epoch in RUN/epochs/ (cryoDRGN's --checkpoint; "
        "0: none; the last epoch always), for --epoch in analyze, volumes and select.",
    ),
    num_workers: int = config_option(
        SpireConfig, "num_workers", "--num-workers", help="Data-loading worker processes."
    ),
    seed: int = config_option(SpireConfig, "seed", "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run directory."),
) -> None:
    """Train CryoSPIRE: consensus -> stage A (features, part discovery) -> stage B (part-aware mixture)."""
    from ..methods.spire import train_spire

    def build() -> SpireConfig:
        source = particle_source(particles, poses, ctf, datadir, ind, apix)
        stage_b: dict[str, Any] = {"gaussians": gaussians, "epochs": epochs_b, "decoder": decoder}
        if no_anchor_motion:  # the flag only switches it off; unset, the config's default holds
            stage_b["anchor_motion"] = False
        return SpireConfig(
            data=source,
            out=str(out.expanduser().resolve()),
            box=box,
            init_map=str(init_map.expanduser().resolve()) if init_map else None,
            zdim=zdim,
            parts=parts,
            latent_search=latent_search,
            search_every=search_every,
            search_band=search_band,
            lambda_occ=lambda_occ,
            init_regions=init_regions,
            lambda_z=lambda_z,
            lambda_f=lambda_f,
            stage_a={"gaussians": coarse_gaussians, "epochs": epochs_a, "positional_encoding": positional_encoding},
            stage_b=stage_b,
            optim={"batch_size": batch_size},
            invert=contrast_choice(invert, uninvert_data),
            device=device,
            snapshot_every=snapshot_every,
            num_workers=num_workers,
            seed=seed,
        )

    run_training(
        SpireConfig,
        build,
        train_spire,
        resume=resume,
        overwrite=overwrite,
        command=spire,
        renamed={"no_anchor_motion": "stage_b.anchor_motion"},
    )


EXAMPLES = examples(
    "cryohet train spire particles.star --out runs/spire -D 128",
    "cryohet train spire stack.mrcs --poses poses.pkl --ctf ctf.pkl -o runs/spire",
    "cryohet train spire particles.star -o runs/spire --device cuda --epochs-b 45",
    "cryohet train spire particles.star -o runs/spire --resume",
    "torchrun --nproc-per-node 4 -m cryohet train spire p.star -o r --device cuda",
)


def register(train_app: typer.Typer) -> None:
    train_app.command("spire", epilog=EXAMPLES)(spire)
