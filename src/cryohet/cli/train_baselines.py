"""``cryohet train homogeneous|oracle|classify3d|pca PARTICLES --out RUN``: the baselines.

Thin wrappers over :mod:`cryohet.methods.baselines` (``train_homogeneous`` ...): each
builds the method's config from the options and calls the API.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from ..io.source import ParticleSource
from ..methods.baselines import Classify3DConfig, HomogeneousConfig, OracleConfig, PCAConfig
from ..methods.baselines.config import BaselineConfig
from .options import (
    build_source,
    config_option,
    contrast_choice,
    examples,
    invert_option,
    uninvert_data_option,
)
from .training import run_training

__all__ = ["register"]


def _abs(p: Path | None) -> Path | None:
    return None if p is None else p.expanduser().resolve()


def _common(
    particles: Path, out: Path, poses, ctf, datadir, ind, apix, box, invert, device, batch_size, seed
) -> dict[str, Any]:
    return {
        "data": build_source(
            path=_abs(particles), poses=_abs(poses), ctf=_abs(ctf), datadir=_abs(datadir), ind=_abs(ind), apix=apix
        ),
        "out": str(out.expanduser().resolve()),
        "box": box,
        "invert": invert,
        "device": device,
        "batch_size": batch_size,
        "seed": seed,
    }


def _run(
    config_cls, train: Callable, fields: dict[str, Any], overwrite: bool, resume: bool = False, command=None
) -> None:
    run_training(config_cls, lambda: config_cls(**fields), train, resume=resume, overwrite=overwrite, command=command)


# Shared options (typer needs them spelt out per command; these keep them identical).
PARTICLES = typer.Argument(..., help="Particles with poses and CTF: .star, .cs, or .mrcs/.txt with --poses/--ctf.")
OUT = typer.Option(..., "--out", "-o", help="Run directory (must be empty unless --overwrite).")
POSES = config_option(ParticleSource, "poses", "--poses", help="cryoDRGN poses.pkl.")
CTF = config_option(ParticleSource, "ctf", "--ctf", help="cryoDRGN ctf.pkl.")
DATADIR = config_option(ParticleSource, "datadir", "--datadir", help="Folder holding the image stacks.")
IND = config_option(ParticleSource, "ind", "--ind", help="cryoDRGN ind.pkl: use only these particles.")
APIX = config_option(ParticleSource, "apix", "--apix", help="Pixel size in Å when the file has none.")
BOX = config_option(BaselineConfig, "box", "--box", "-D")
INVERT = invert_option(BaselineConfig)
UNINVERT = uninvert_data_option()
DEVICE = config_option(BaselineConfig, "device", "--device", help="cpu or cuda (cuda:N).")
BATCH = config_option(BaselineConfig, "batch_size", "--batch-size", "-b")
SEED = config_option(BaselineConfig, "seed", "--seed", help="Random seed.")
OVERWRITE = typer.Option(False, "--overwrite", help="Reuse a non-empty run directory.")
RESUME = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint (its own config).")


def homogeneous(
    particles: Path = PARTICLES,
    out: Path = OUT,
    poses: Optional[Path] = POSES,
    ctf: Optional[Path] = CTF,
    datadir: Optional[Path] = DATADIR,
    ind: Optional[Path] = IND,
    apix: Optional[float] = APIX,
    box: Optional[int] = BOX,
    invert: Optional[bool] = INVERT,
    uninvert_data: bool = UNINVERT,
    device: str = DEVICE,
    batch_size: int = BATCH,
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
    resume: bool = RESUME,
) -> None:
    """Consensus map (half maps, FSC); latents are zeros and every z gives the consensus."""
    from ..methods.baselines import train_homogeneous

    fields = _common(
        particles, out, poses, ctf, datadir, ind, apix, box, contrast_choice(invert, uninvert_data), device,
        batch_size, seed,
    )  # fmt: skip
    _run(HomogeneousConfig, train_homogeneous, fields, overwrite, resume, homogeneous)


def oracle(
    particles: Path = PARTICLES,
    out: Path = OUT,
    labels: Path = typer.Option(
        ..., "--labels", help="True state labels (.npy, one per particle), e.g. gt/labels.npy."
    ),
    poses: Optional[Path] = POSES,
    ctf: Optional[Path] = CTF,
    datadir: Optional[Path] = DATADIR,
    ind: Optional[Path] = IND,
    apix: Optional[float] = APIX,
    box: Optional[int] = BOX,
    invert: Optional[bool] = INVERT,
    uninvert_data: bool = UNINVERT,
    device: str = DEVICE,
    batch_size: int = BATCH,
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
    resume: bool = RESUME,
) -> None:
    """Per-state maps from the TRUE labels (a reference for perfect classification, not an upper bound)."""
    from ..methods.baselines import train_oracle

    fields = _common(
        particles, out, poses, ctf, datadir, ind, apix, box, contrast_choice(invert, uninvert_data), device,
        batch_size, seed,
    )  # fmt: skip
    _run(OracleConfig, train_oracle, {**fields, "labels": _abs(labels)}, overwrite, resume, oracle)


def classify3d(
    particles: Path = PARTICLES,
    out: Path = OUT,
    classes: int = config_option(Classify3DConfig, "classes", "--classes", "-K"),
    iterations: int = config_option(Classify3DConfig, "iterations", "--iterations"),
    max_resolution: Optional[float] = config_option(Classify3DConfig, "max_resolution_A", "--max-resolution"),
    init: str = config_option(
        Classify3DConfig,
        "init",
        "--init",
        help="Initial split: pca (k-means of a quick PCA's latents) or random (RELION's).",
    ),
    init_iterations: int = config_option(Classify3DConfig, "init_iterations", "--init-iterations"),
    poses: Optional[Path] = POSES,
    ctf: Optional[Path] = CTF,
    datadir: Optional[Path] = DATADIR,
    ind: Optional[Path] = IND,
    apix: Optional[float] = APIX,
    box: Optional[int] = BOX,
    invert: Optional[bool] = INVERT,
    uninvert_data: bool = UNINVERT,
    device: str = DEVICE,
    batch_size: int = BATCH,
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
    resume: bool = RESUME,
) -> None:
    """3D classification: K class maps by EM with fixed poses; latents are the class posteriors."""
    from ..methods.baselines import train_classify3d

    fields = _common(
        particles, out, poses, ctf, datadir, ind, apix, box, contrast_choice(invert, uninvert_data), device,
        batch_size, seed,
    )  # fmt: skip
    fields.update(
        classes=classes,
        iterations=iterations,
        max_resolution_A=max_resolution,
        init=init,
        init_iterations=init_iterations,
    )
    _run(Classify3DConfig, train_classify3d, fields, overwrite, resume, classify3d)


def pca(
    particles: Path = PARTICLES,
    out: Path = OUT,
    components: int = config_option(PCAConfig, "components", "--k", "--components"),
    iterations: int = config_option(PCAConfig, "iterations", "--iterations"),
    max_resolution: Optional[float] = config_option(PCAConfig, "max_resolution_A", "--max-resolution"),
    mask: Optional[Path] = config_option(PCAConfig, "mask", "--mask"),
    poses: Optional[Path] = POSES,
    ctf: Optional[Path] = CTF,
    datadir: Optional[Path] = DATADIR,
    ind: Optional[Path] = IND,
    apix: Optional[float] = APIX,
    box: Optional[int] = BOX,
    invert: Optional[bool] = INVERT,
    uninvert_data: bool = UNINVERT,
    device: str = DEVICE,
    batch_size: int = BATCH,
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
    resume: bool = RESUME,
) -> None:
    """Linear components of heterogeneity (probabilistic PCA by EM, 3DVA-like); latents are PC coordinates."""
    from ..methods.baselines import train_pca

    fields = _common(
        particles, out, poses, ctf, datadir, ind, apix, box, contrast_choice(invert, uninvert_data), device,
        batch_size, seed,
    )  # fmt: skip
    fields.update(components=components, iterations=iterations, max_resolution_A=max_resolution, mask=_abs(mask))
    _run(PCAConfig, train_pca, fields, overwrite, resume, pca)


def register(train_app: typer.Typer) -> None:
    train_app.command(
        "homogeneous",
        epilog=examples(
            "cryohet train homogeneous particles.star --out runs/consensus",
            "cryohet train homogeneous J42_particles.cs -o runs/consensus -D 128",
        ),
    )(homogeneous)
    train_app.command(
        "oracle",
        epilog=examples("cryohet train oracle particles.star --labels gt/labels.npy --out runs/oracle"),
    )(oracle)
    train_app.command(
        "classify3d",
        epilog=examples(
            "cryohet train classify3d particles.star --out runs/class3d -K 6",
            "cryohet train classify3d particles.star -o runs/class3d --init random",
        ),
    )(classify3d)
    train_app.command(
        "pca",
        epilog=examples(
            "cryohet train pca particles.star --out runs/pca --k 3",
            "cryohet train pca particles.star -o runs/pca --mask mask.mrc -D 128",
        ),
    )(pca)
