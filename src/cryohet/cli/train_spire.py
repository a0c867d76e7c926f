"""``cryohet train spire PARTICLES --out RUN``: CryoSPIRE (part-aware Gaussian mixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from ..config import validation_message
from ..errors import ConfigError

__all__ = ["register"]


def spire(
    particles: Path = typer.Argument(
        ..., help="Particles with poses and CTF: .star, .cs, or .mrcs with --poses/--ctf."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
    poses: Optional[Path] = typer.Option(None, "--poses", help="cryoDRGN poses.pkl."),
    ctf: Optional[Path] = typer.Option(None, "--ctf", help="cryoDRGN ctf.pkl."),
    datadir: Optional[Path] = typer.Option(None, "--datadir", help="Folder holding the image stacks."),
    ind: Optional[Path] = typer.Option(None, "--ind", help="cryoDRGN ind.pkl: train on these particles."),
    apix: Optional[float] = typer.Option(None, "--apix", help="Pixel size in Å when the file has none."),
    box: Optional[int] = typer.Option(None, "--box", "-D", help="Train at this box (Fourier-cropped)."),
    init_map: Optional[Path] = typer.Option(
        None, "--init-map", help="Consensus map to seed from (default: backprojection)."
    ),
    zdim: int = typer.Option(4, "--zdim", help="Latent dimension."),
    gaussians: Optional[int] = typer.Option(
        None, "--gaussians", help="Stage-B Gaussians (default: 1.2 per protein voxel)."
    ),
    coarse_gaussians: Optional[int] = typer.Option(
        None, "--coarse-gaussians", help="Stage-A Gaussians (default: 0.3 per protein voxel)."
    ),
    parts: Optional[int] = typer.Option(None, "--parts", help="Number of parts (default: automatic, see docs)."),
    epochs_a: int = typer.Option(15, "--epochs-a", help="Stage-A epochs (part discovery)."),
    epochs_b: int = typer.Option(30, "--epochs-b", help="Stage-B epochs."),
    batch_size: int = typer.Option(32, "--batch-size", "-b"),
    decoder: str = typer.Option(
        "factorized", "--decoder", help="Per-Gaussian decoder: factorized (fast) or mlp (paper)."
    ),
    no_anchor_motion: bool = typer.Option(False, "--no-anchor-motion", help="Ablation: no rigid part motion."),
    positional_encoding: bool = typer.Option(
        False, "--positional-encoding", help="Ablation: positional encoding instead of features."
    ),
    init_regions: int = typer.Option(
        16,
        "--init-regions",
        help="Start latents from the images' fitted occupancy of this many regions of the consensus; 0: random.",
    ),
    latent_search: int = typer.Option(
        16,
        "--latent-search",
        help="Candidates of the discrete latent search (end of stage A, last quarter of stage B); 0: off.",
    ),
    search_every: Optional[int] = typer.Option(
        None,
        "--search-every",
        help="Stage B: also search every this many epochs before the last quarter (hard-EM rounds); 0: once.",
    ),
    search_band: Optional[float] = typer.Option(
        None, "--search-band", help="Score search candidates below this fraction of Nyquist."
    ),
    lambda_occ: Optional[float] = typer.Option(
        None, "--lambda-occ", help="Binary-occupancy prior weight κ (stage B); 0: off."
    ),
    lambda_z: float = typer.Option(0.1, "--lambda-z"),
    lambda_f: float = typer.Option(0.01, "--lambda-f"),
    invert: bool = typer.Option(False, "--invert", help="Images have dark protein (multiply by -1)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (cuda:N)."),
    num_workers: int = typer.Option(0, "--num-workers", help="Data-loading worker processes."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty run directory."),
) -> None:
    """Train CryoSPIRE: consensus -> stage A (features, part discovery) -> stage B (part-aware mixture)."""
    from ..io.particles import ParticleSource
    from ..methods.spire import SpireConfig, train_spire

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    try:

        def absolute(p: Path | None) -> Path | None:
            return None if p is None else p.expanduser().resolve()

        source = ParticleSource(
            path=absolute(particles),
            poses=absolute(poses),
            ctf=absolute(ctf),
            datadir=absolute(datadir),
            ind=absolute(ind),
            apix=apix,
        )
        optional = {
            k: v
            for k, v in {"search_every": search_every, "search_band": search_band, "lambda_occ": lambda_occ}.items()
            if v is not None
        }
        cfg = SpireConfig(
            **optional,
            data=source,
            out=str(out.expanduser().resolve()),
            box=box,
            init_map=str(init_map.expanduser().resolve()) if init_map else None,
            zdim=zdim,
            parts=parts,
            latent_search=latent_search,
            init_regions=init_regions,
            lambda_z=lambda_z,
            lambda_f=lambda_f,
            stage_a={"gaussians": coarse_gaussians, "epochs": epochs_a, "positional_encoding": positional_encoding},
            stage_b={
                "gaussians": gaussians,
                "epochs": epochs_b,
                "decoder": decoder,
                "anchor_motion": not no_anchor_motion,
            },
            optim={"batch_size": batch_size},
            invert=invert,
            device=device,
            num_workers=num_workers,
            seed=seed,
        )
    except ValidationError as err:
        raise ConfigError(validation_message(err)) from None
    if resume and (out / "config.yaml").exists():
        from ..config import load_config

        saved = load_config(out / "config.yaml", SpireConfig, drop=("resolved",))
        cfg = saved.model_copy(update={"out": cfg.out})  # a copied or moved run resumes where it now is
    run = train_spire(cfg, resume=resume, overwrite=overwrite)
    typer.echo(f"wrote {run}")


def register(train_app: typer.Typer) -> None:
    train_app.command("spire")(spire)
