"""``cryohet infer RUN PARTICLES --out DIR``: an amortised run's encoder on new particles."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..io.source import ParticleSource
from ..workflows.config import InferConfig
from .options import absolute_path, build_config, build_source, config_option, examples

__all__ = ["register"]


def infer(
    run: Path = typer.Argument(..., help="Run directory of an amortised method (cryohet train hetacumn)."),
    particles: Path = typer.Argument(..., help="Particles: .star, .cs, or .mrcs with --ctf ctf.pkl."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: a run directory of these particles."),
    ctf: Optional[Path] = config_option(ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl."),
    datadir: Optional[Path] = config_option(
        ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks."
    ),
    ind: Optional[Path] = config_option(ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: only these particles."),
    apix: Optional[float] = config_option(
        ParticleSource, "apix", "--apix", help="Pixel size in Å when the file has none."
    ),
    batch_size: int = config_option(InferConfig, "batch_size", "--batch-size", "-b"),
    poses: str = config_option(InferConfig, "poses", "--poses", help="encoder, search or input."),
    refine_step_deg: float = config_option(InferConfig, "refine_step_deg", "--refine-step-deg"),
    in_plane_views: int = config_option(InferConfig, "in_plane_views", "--in-plane-views"),
    search_worst: float = config_option(InferConfig, "search_worst", "--search-worst"),
    latent_steps: int = config_option(InferConfig, "latent_steps", "--latent-steps"),
    latent_lr: float = config_option(InferConfig, "latent_lr", "--latent-lr"),
    device: str = config_option(InferConfig, "device", "--device", help="cpu or cuda (cuda:N)."),
    overwrite: bool = config_option(InferConfig, "overwrite", "--overwrite", help="Replace DIR as a whole."),
    allow_unfinished: bool = config_option(
        InferConfig, "allow_unfinished", "--allow-unfinished", help="Use a run that is still training or was killed."
    ),
) -> None:
    """Latents and poses of particles the run never saw, by its encoder (no training).

    DIR becomes a run directory of these particles: latents.npy (input
    order), poses.npz, particles.star (or .cs for a cryoSPARC input: its rows
    with the predicted poses), model.pt and config.yaml. volumes, analyze,
    select and export take DIR as they take a run. --refine-step-deg refines
    the encoder's poses by a local search against the run's field (slower,
    closer to the search's accuracy). --poses search finds the poses by the
    run's pose search against its field instead (not amortised: for particles
    the encoder cannot pose). --in-plane-views K also shows the encoder each
    image turned in plane K-1 times and keeps the pose most views agree with.
    --latent-steps N fits each latent to its image at its final pose (N
    gradient steps from the encoder's, the field fixed). --search-worst F
    poses the share F that fits worst after refinement again by the pose
    search, each keeping the better fit. --poses input keeps
    the particles' own poses (a consensus refinement of them): a run trained
    with given poses then reads each latent at its particle's pose.
    """
    from ..workflows.infer import infer_particles

    cfg = build_config(
        InferConfig,
        run=run,
        data=build_source(
            path=absolute_path(particles),
            ctf=absolute_path(ctf),
            datadir=absolute_path(datadir),
            ind=absolute_path(ind),
            apix=apix,
        ),
        out=out,
        batch_size=batch_size,
        poses=poses,
        refine_step_deg=refine_step_deg,
        in_plane_views=in_plane_views,
        search_worst=search_worst,
        latent_steps=latent_steps,
        latent_lr=latent_lr,
        device=device,
        overwrite=overwrite,
        allow_unfinished=allow_unfinished,
    )
    folder, n, rate = infer_particles(cfg)
    typer.echo(f"wrote {folder} ({n} particles, encoder at {rate:.0f} images/s)")


def register(app: typer.Typer) -> None:
    app.command(
        "infer",
        epilog=examples(
            "cryohet infer runs/hetacumn new_particles.star --out runs/hetacumn_new",
            "cryohet infer runs/hetacumn particles.star --ind rest.pkl -o runs/rest",
            "cryohet infer runs/het new.star -o runs/new_refined --refine-step-deg 16",
            "cryohet infer runs/het new.star -o runs/new_searched --poses search",
            "cryohet infer runs/het new.star -o runs/new_fit --latent-steps 5",
        ),
    )(infer)
