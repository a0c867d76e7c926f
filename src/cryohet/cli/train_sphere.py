"""``cryohet train sphere PARTICLES --model model.pdb --out RUN``: cryoSPHERE (an atomic model, moved per image)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from ..io.source import ParticleSource
from ..methods.sphere.config import SphereConfig
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

_SEARCH_DEFAULT = SphereConfig.model_fields["domain_search_at"].default_factory()  # type: ignore[misc]


def sphere(
    particles: Path = typer.Argument(
        ..., help="Particles with poses and CTF: .star, .cs, or .mrcs with --poses and --ctf."
    ),
    model: Path = typer.Option(
        ..., "--model", "-m", help="Atomic model (.pdb/.cif) fitted into the consensus map of these particles."
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
    chains: Optional[str] = typer.Option(
        None, "--chains", help="Comma-separated chains that may move (default: all), e.g. A,B."
    ),
    centred_model: bool = config_option(
        SphereConfig, "centred_model", "--centred-model", help="The model is centred at 0: put it on the box centre."
    ),
    consensus: Optional[Path] = config_option(
        SphereConfig,
        "consensus",
        "--consensus",
        help="Consensus map to check the model against (default: backprojected from the particles).",
    ),  # fmt: skip
    segments: int = config_option(
        SphereConfig, "segments", "--segments", help="Segments in all (per chain by length)."
    ),
    zdim: int = config_option(SphereConfig, "zdim", "--zdim"),
    epochs: int = config_option(SphereConfig, "epochs", "--epochs", "-n"),
    box: Optional[int] = config_option(SphereConfig, "box", "--box", "-D"),
    encoder: str = config_option(SphereConfig, "encoder", "--encoder", help="amortised or autodecode."),
    rotation: str = config_option(
        SphereConfig,
        "rotation",
        "--rotation",
        help="Decoder rotations: rotvec (axis-angle, through 180°), sixd (two matrix columns, "
        "through a full turn) or quaternion (the paper's).",
    ),
    encoder_box: int = config_option(
        SphereConfig, "encoder_box", "--encoder-box", help="The encoder sees the images Fourier-cropped to this box."
    ),
    domain_search_at: Optional[str] = typer.Option(
        None,
        "--domain-search-at",
        help="Fractions of the run at whose start each image's moving domains are searched through a full turn "
        f"about their hinge, comma-separated, or 'none' (default: {','.join(map(str, _SEARCH_DEFAULT))}).",
    ),
    domain_rigidity: float = config_option(
        SphereConfig,
        "domain_rigidity",
        "--domain-rigidity",
        help="Weight of the restraint that keeps each searched domain rigid after the search (0: off).",
    ),
    domain_latent_ring: float = config_option(
        SphereConfig,
        "domain_latent_ring",
        "--domain-latent-ring",
        help="Weight of the pull of each image's latent towards a ring point at its searched turn (0: off).",
    ),
    domain_turns: bool = config_option(
        SphereConfig,
        "domain_turns",
        "--domain-turns/--no-domain-turns",
        help="After the first search, each searched domain turns by the angle of its latent ring point.",
    ),
    domain_hinge_refine: bool = config_option(
        SphereConfig,
        "domain_hinge_refine",
        "--domain-hinge-refine/--no-domain-hinge-refine",
        help="At later searches, choose each turning domain's hinge (pivot, axis) again on the data.",
    ),
    batch_size: int = config_option(SphereConfig, "optim.batch_size", "--batch-size", "-b"),
    lr: float = config_option(SphereConfig, "optim.lr_network", "--lr", help="Adam rate of the networks."),
    invert: Optional[bool] = invert_option(SphereConfig),
    uninvert_data: bool = uninvert_data_option(),
    device: str = config_option(SphereConfig, "device", "--device", help="cpu or cuda (cuda:N)."),
    snapshot_every: int = config_option(
        SphereConfig,
        "snapshot_every",
        "--snapshot-every",
        "--checkpoint",
        help="Keep model, latents and poses after every N-th epoch in RUN/epochs/ (cryoDRGN's --checkpoint; "
        "0: none; the last epoch always), for --epoch in analyze, volumes and select.",
    ),
    load: Optional[Path] = config_option(
        SphereConfig,
        "load",
        "--load",
        help="Start from another run's weights (its run directory or model.pt).",
    ),
    num_workers: int = config_option(SphereConfig, "num_workers", "--num-workers", help="Data-loading processes."),
    seed: int = config_option(SphereConfig, "seed", "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run in --out."),
) -> None:
    """Train cryoSPHERE: the model's residues as Gaussians, a learned segmentation of its
    chains, and per-image rigid segment motions decoded from a latent. The model must sit in
    the frame of the particles' consensus map (fit it into `cryohet backproject`'s map in
    ChimeraX); it is checked against that map before training."""
    from ..methods.sphere import train_sphere

    def build() -> SphereConfig:
        source = particle_source(particles, poses, ctf, datadir, ind, apix)
        return SphereConfig(
            data=source,
            out=str(out.expanduser().resolve()),
            model=str(absolute_path(model)),
            centred_model=centred_model,
            chains=chains.split(",") if chains else None,
            consensus=str(absolute_path(consensus)) if consensus else None,
            segments=segments,
            zdim=zdim,
            epochs=epochs,
            box=box,
            encoder=encoder,
            rotation=rotation,
            encoder_box=encoder_box,
            optim={"batch_size": batch_size, "lr_network": lr},
            **_search_fractions(domain_search_at),
            domain_rigidity=domain_rigidity,
            domain_latent_ring=domain_latent_ring,
            domain_turns=domain_turns,
            domain_hinge_refine=domain_hinge_refine,
            invert=contrast_choice(invert, uninvert_data),
            device=device,
            snapshot_every=snapshot_every,
            load=str(absolute_path(load)) if load is not None else None,
            num_workers=num_workers,
            seed=seed,
        )

    run_training(
        SphereConfig, build, train_sphere, resume=resume, overwrite=overwrite, command=sphere, more_inputs=_model_file
    )


def _search_fractions(text: str | None) -> dict:
    """``--domain-search-at``: nothing (the config's default), ``none``, or fractions."""
    if text is None:
        return {}
    if text.strip().lower() in ("none", ""):
        return {"domain_search_at": []}
    try:
        return {"domain_search_at": [float(x) for x in text.split(",") if x.strip()]}
    except ValueError:
        raise ConfigError(f"--domain-search-at takes comma-separated fractions or 'none', got {text!r}") from None


def _model_file(cfg: SphereConfig) -> list[Path]:
    """The atomic model, an input ``--out`` must not be; a missing one is refused."""
    if not Path(cfg.model).is_file():
        raise ConfigError(f"{cfg.model}: model file not found")
    return [Path(cfg.model)]


EXAMPLES = examples(
    "cryohet train sphere particles.star --model fitted.pdb --out runs/sphere",
    "cryohet train sphere parts.star -m af2.cif --chains H,L -o runs/fab",
    "cryohet train sphere parts.star -m af.pdb --centred-model -o runs/sph",
    "cryohet train sphere parts.star -m fit.pdb -o runs/sph --resume -n 40",
)


def register(train_app: typer.Typer) -> None:
    train_app.command("sphere", epilog=EXAMPLES)(sphere)
