"""``cryohet train hetacumn PARTICLES --out RUN``: HetACUMN (amortised pose and conformation)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..io.source import ParticleSource
from ..methods.hetacumn.config import HetacumnConfig
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


def hetacumn(
    particles: Path = typer.Argument(..., help="Particles with CTF: .star, .cs (poses optional), or .mrcs with --ctf."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
    poses: Optional[Path] = config_option(ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl (fixed)."),
    ctf: Optional[Path] = config_option(ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl."),
    datadir: Optional[Path] = config_option(
        ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks."
    ),
    ind: Optional[Path] = config_option(
        ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: train on these particles (infer the rest later)."
    ),
    apix: Optional[float] = config_option(
        ParticleSource, "apix", "--apix", help="Pixel size in Å when the file has none."
    ),
    poses_mode: str = config_option(HetacumnConfig, "poses_mode", "--poses-mode"),
    zdim: int = config_option(HetacumnConfig, "zdim", "--zdim", help="Latent dimension."),
    latent_init: str = config_option(
        HetacumnConfig,
        "latent_init",
        "--latent-init",
        help="subspace: the field first decodes, and the encoder learns, a PCA of the heterogeneity at the run's "
        "poses (searched or given), for --latent-init-epochs; random: the latent learnt from reconstruction alone.",
    ),
    latent_init_epochs: int = config_option(
        HetacumnConfig,
        "latent_init_epochs",
        "--latent-init-epochs",
        help="Amortised epochs in which the field decodes the seed latents (then the encoder's).",
    ),
    latent_init_steps: int = config_option(
        HetacumnConfig,
        "latent_init_steps",
        "--latent-init-steps",
        help="With given poses and --latent-encoder-part: steps in which the encoder learns the seed first.",
    ),
    latent_readout: bool = config_option(
        HetacumnConfig,
        "latent_readout",
        "--latent-readout/--no-latent-readout",
        help="The latent is the encoder's plus the image's coordinates in the seed's subspace at its pose "
        "(--latent-init subspace), so new particles get theirs at their poses.",
    ),
    latent_encoder_part: bool = config_option(
        HetacumnConfig,
        "latent_encoder_part",
        "--latent-encoder-part/--no-latent-encoder-part",
        help="With --latent-readout: the encoder's own output is part of the latent (or the coordinates alone).",
    ),
    box: Optional[int] = config_option(HetacumnConfig, "box", "--box", "-D"),
    epochs: int = config_option(HetacumnConfig, "epochs", "--epochs", "-n"),
    heads: int = config_option(HetacumnConfig, "encoder.heads", "--heads", help="Pose heads per image."),
    rotation_grid: str = config_option(
        HetacumnConfig,
        "encoder.rotation_grid_level",
        "--rotation-grid",
        help="Classify rotations over the HEALPix grid of this level (0, 1 or 2: 72, 576 or 4 608 rotations); "
        "'none' regresses them (the 6D parametrisation).",
    ),
    pretrain_images: int = config_option(
        HetacumnConfig, "warm_start.pretrain_images", "--pretrain-images", help="Images of the pretraining pass."
    ),
    search_images: int = config_option(
        HetacumnConfig,
        "warm_start.search_images",
        "--search-images",
        help="Image-searches of the ab initio warm start (0: none).",
    ),  # fmt: skip
    encoder_steps: int = config_option(
        HetacumnConfig, "warm_start.encoder_steps", "--encoder-steps", help="Steps of the warm start's encoder epoch."
    ),
    distill_weight: float = config_option(
        HetacumnConfig,
        "warm_start.distill_weight",
        "--distill-weight",
        help="Weight of the encoder's error on the searched poses of the particles it trains on (0: it learns poses "
        "from task 2 alone).",
    ),
    in_plane: bool = config_option(
        HetacumnConfig,
        "warm_start.in_plane_augment",
        "--in-plane-augment/--no-in-plane-augment",
        help="Show the encoder each real image turned in plane by a random angle (its searched pose turned with "
        "it), so it cannot memorise the particles it trains on.",
    ),
    search_latents: bool = config_option(
        HetacumnConfig,
        "warm_start.search_latents",
        "--search-latents/--no-search-latents",
        help="Learn a latent per image with the searched poses and search each image against the field at its "
        "latent's cluster (as DRGN-AI); off: a homogeneous warm start, which fails on compositional data.",
    ),
    task1_poses: str = config_option(
        HetacumnConfig,
        "warm_start.task1_poses",
        "--task1-poses",
        help="Poses of task 1 after the warm start: encoder (amortised) or searched (semi-amortised: the searched "
        "poses refined, the encoder learns them).",
    ),
    pose_task: float = config_option(
        HetacumnConfig, "pose_task.weight", "--pose-task", help="Weight of task 2 (0: the ablation without it)."
    ),
    pose_task_images: float = config_option(
        HetacumnConfig,
        "pose_task.images",
        "--pose-task-images",
        help="Images rendered for task 2 per real image of a batch.",
    ),
    beta: float = config_option(HetacumnConfig, "optim.beta", "--beta", help="Weight of the KL term."),
    batch_size: int = config_option(HetacumnConfig, "optim.batch_size", "--batch-size", "-b"),
    invert: Optional[bool] = invert_option(HetacumnConfig),
    uninvert_data: bool = uninvert_data_option(),
    device: str = config_option(HetacumnConfig, "device", "--device", help="cpu or cuda (cuda:N)."),
    snapshot_every: int = config_option(
        HetacumnConfig,
        "snapshot_every",
        "--snapshot-every",
        "--checkpoint",
        help="Keep model, latents and poses after every N-th epoch in RUN/epochs/ (0: none; the last always).",
    ),  # fmt: skip
    num_workers: int = config_option(HetacumnConfig, "num_workers", "--num-workers", help="Data-loading processes."),
    seed: int = config_option(HetacumnConfig, "seed", "--seed", help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run in --out."),
) -> None:
    """HetACUMN: an encoder predicts each image's pose and conformation, a neural field decodes
    them, and images rendered at random poses teach the encoder to keep pose out of the latent.

    Ab initio (the default), a warm start comes first: the pose search against the field as
    it learns (--search-images), then an epoch that teaches the encoder those poses
    (--encoder-steps); the --epochs amortised epochs follow.

    New particles are encoded without training by cryohet infer RUN PARTICLES --out DIR.
    """
    from ..methods.hetacumn.trainer import train_hetacumn

    def build() -> HetacumnConfig:
        return HetacumnConfig(
            data=particle_source(particles, poses, ctf, datadir, ind, apix),
            out=str(out.expanduser().resolve()),
            poses_mode=poses_mode,
            zdim=zdim,
            latent_init=latent_init,
            latent_init_epochs=latent_init_epochs,
            latent_init_steps=latent_init_steps,
            latent_readout=latent_readout,
            latent_encoder_part=latent_encoder_part,
            box=box,
            epochs=epochs,
            encoder={"heads": heads, "rotation_grid_level": rotation_grid},
            warm_start={
                "pretrain_images": pretrain_images,
                "search_images": search_images,
                "encoder_steps": encoder_steps,
                "task1_poses": task1_poses,
                "distill_weight": distill_weight,
                "in_plane_augment": in_plane,
                "search_latents": search_latents,
            },  # fmt: skip
            pose_task={"weight": pose_task, "images": pose_task_images},
            optim={"beta": beta, "batch_size": batch_size},
            invert=contrast_choice(invert, uninvert_data),
            device=device,
            snapshot_every=snapshot_every,
            num_workers=num_workers,
            seed=seed,
        )

    run_training(HetacumnConfig, build, train_hetacumn, resume=resume, overwrite=overwrite, command=hetacumn)


EXAMPLES = examples(
    "cryohet train hetacumn particles.star --out runs/hetacumn --zdim 8",
    "cryohet train hetacumn refined.star -o runs/het --poses-mode fixed",
    "cryohet train hetacumn particles.star -o runs/het --ind train25.pkl",
    "cryohet train hetacumn particles.star -o het --search-images 40000",
    "cryohet train hetacumn particles.star -o runs/het --resume --epochs 60",
)


def register(train_app: typer.Typer) -> None:
    train_app.command("hetacumn", epilog=EXAMPLES)(hetacumn)
