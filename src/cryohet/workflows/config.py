"""Configs of the workflows that the command line builds: :class:`BackprojectConfig`,
:class:`InferConfig`.

Pure pydantic, apart from the workflows themselves, so ``cryohet backproject --help`` reads
the defaults without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StrictModel
from ..io.source import ParticleSource
from ..methods.run_fields import invert_field

__all__ = ["BackprojectConfig", "InferConfig"]


class BackprojectConfig(StrictModel):
    """Inputs and options of a homogeneous reconstruction."""

    data: ParticleSource
    out: Path
    box: int | None = Field(None, ge=8)
    invert: bool | None = invert_field()
    batch_size: int = Field(256, gt=0)
    device: str = "cpu"
    seed: int = 0
    overwrite: bool = False


class InferConfig(StrictModel):
    """Which run encodes which particles, and where the result goes."""

    run: Path
    data: ParticleSource
    out: Path
    batch_size: int = Field(256, gt=0, description="images per encoder batch")
    poses: Literal["encoder", "search", "input"] = Field(
        "encoder",
        description=(
            "encoder: the encoder's poses (amortised: thousands of images/s); search: the run's pose search "
            "against its field, each image at its encoder latent's cluster (for particles the encoder cannot "
            "pose; tens of images/s on a CPU); input: the particles' own poses (a consensus refinement of them; "
            "a run with latent_readout reads each latent at its particle's pose, as with poses given in training)"
        ),
    )
    refine_step_deg: float = Field(
        0.0,
        ge=0.0,
        le=45.0,
        description=(
            "refine the encoder's poses by a local search against the run's field, starting at this step "
            "(degrees; 16 suits an encoder ~20 deg off); 0: the encoder's poses as they are (thousands of "
            "images/s; refined: tens to hundreds)"
        ),
    )
    in_plane_views: int = Field(
        1,
        ge=1,
        le=36,
        description=(
            "the encoder also sees each image turned in plane by 360/k degrees (k views); each image keeps the "
            "pose most views agree with (within 15 deg; the latent stays the untouched image's). On igg-1d "
            "(SNR 0.1, trained on 1 000 of 4 000 at box 32, 2 000 encoder steps), unseen particles 50 -> 38 / 31 / "
            "29 deg median at k = 4 / 8 / 16, 4 300 / 1 500 / 740 images/s on one thread; with 20 000 steps "
            "23.4 -> 18.3 deg at k = 8"
        ),
    )
    search_worst: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "after --refine-step-deg: this share of the particles, those whose refined pose fits the run's field "
            "worst (the data term), are posed again by the run's pose search (then refined the same way) and keep "
            "whichever pose fits better; for the encoder's gross failures at a fraction of --poses search's cost"
        ),
    )
    latent_steps: int = Field(
        0,
        ge=0,
        le=1000,
        description=(
            "fit each particle's latent to its image at its (final) pose by this many gradient steps from the "
            "encoder's, the field fixed (semi-amortised; for particles the encoder's latent does not generalise "
            "to); 0: the encoder's latents. On simulated assembly (1 000 trained, 3 000 unseen, refined poses), 5 "
            "steps of 0.05: latent ARI 0.420 -> 0.479 trained, 0.200 -> 0.350 unseen, 14-16 images/s on one thread; "
            "10 or more steps of 0.05 moved the latents past their best"
        ),
    )
    latent_lr: float = Field(0.05, gt=0, description="step size of the latent fit (Adam, latent units per step)")
    device: str = "cpu"
    allow_unfinished: bool = Field(False, description="use a run that is still training or was killed")
    overwrite: bool = Field(False, description="replace an existing output folder (as a whole)")
