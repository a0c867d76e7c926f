"""Configuration of cryoSPHERE training (``cryohet train sphere``); YAML round-trips it.

The paper's numbers (Ducrocq et al. 2025, METHODS.md §4) are the defaults where it states
them: 20 segments, latent dimension 8, the encoder's 512-256-64-64 MLP on a 64-pixel
Fourier crop, the decoder's two 512-wide layers, temperature 0.05, the segmentation
priors, continuity and clash weights 0.1, the KL weights annealed (linear to mid-run for
the latent and the segment centres and widths, 5 cycles for the proportions). Where the
paper is silent or cryohet changed it, the field says so.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ...config import StrictModel
from ...io.source import ParticleSource
from ..run_fields import invert_field, load_field, snapshot_every_field

__all__ = ["SphereConfig", "SphereOptimConfig"]


class SphereOptimConfig(StrictModel):
    """Adam learning rates and the batch (paper: 3e-4 with batches of 128 on a GPU; ours, measured)."""

    lr_network: float = Field(
        1e-3, gt=0, description="encoder, decoder and the amplitude scale (ours, measured on igg-1d 0-90°, D=64, "
        "SNR 0.05, 4 000 images: 3e-3 diverged at epoch 13 of 20 (KL 3 600, continuity 120 Å^2); 1e-3 with 40 epochs "
        "recovered the states to 1.9 Å mean Cα RMSD)",
    )  # fmt: skip
    lr_segmentation: float = Field(1e-2, gt=0, description="the segmentation's variational parameters (ours)")
    lr_latents: float = Field(0.1, gt=0, description="per-image latents when auto-decoding (row-wise Adam)")
    batch_size: int = Field(32, gt=0)


#: What runs of each older method version had where their config said nothing.
_OLDER_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"domain_search_at": [], "domain_rigidity": 0.0, "rotation": "quaternion", "domain_latent_ring": 0.0,
        "domain_turns": False, "domain_hinge_refine": False},
    2: {"domain_rigidity": 0.0, "rotation": "quaternion", "domain_latent_ring": 0.0, "domain_turns": False,
        "domain_hinge_refine": False},
    3: {"rotation": "rotvec", "domain_latent_ring": 0.0, "domain_turns": False, "domain_hinge_refine": False},
    4: {"domain_turns": False, "domain_hinge_refine": False},
    5: {"domain_hinge_refine": False},
    6: {"domain_hinge_min_shift_A": 0.0, "domain_hinge_min_tilt_deg": 0.0},
}  # fmt: skip


class SphereConfig(StrictModel):
    """Everything that defines a cryoSPHERE run (the resolved ``config.yaml``)."""

    #: What ``--resume`` may change besides the device and workers.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs", "optim.batch_size", "snapshot_every")

    method: Literal["sphere"] = "sphere"
    method_version: int = Field(
        7,
        description="7: a hinge chosen again replaces the current one only when it moved by at least "
        "domain_hinge_min_shift_A or domain_hinge_min_tilt_deg; 6: the hinges of turning domains are chosen "
        "again on the data at each later search (domain_hinge_refine); 5: each searched domain turns by the "
        "angle of its latent ring (domain_turns); 4: rotations are two matrix columns (sixd) by default and "
        "the latents are drawn to a ring of the searched turns (domain_latent_ring); 3: the searched domains "
        "are kept rigid (domain_rigidity), rotations are axis-angle vectors by default; 2: the moving domains"
        " are searched per image (domain_search_at); runs of older versions are read as they ran",
    )
    data: ParticleSource
    out: str
    model: str = Field(..., description="the atomic model (.pdb/.cif, optionally .gz) in the consensus map's frame")
    centred_model: bool = Field(
        False, description="the model is centred at the origin: place it on the box centre ((D//2) x apix Å)"
    )
    chains: list[str] | None = Field(None, description="chains that may move (default: all)")
    segments: int = Field(20, gt=0, description="segments in all, shared out over the movable chains by length")
    zdim: int = Field(8, gt=0)
    epochs: int = Field(
        40,
        ge=0,
        description="passes over the data; the KL weights anneal over them (beta reaches 1 at mid-run). Ours: on "
        "igg-1d 0-90° (4 000 images, 125 steps per epoch) 20 epochs left the latent collapsed, 40 learned the motion",
    )
    box: int | None = Field(None, description="train at this box (Fourier-cropped); default: the data's")
    start_resolution_A: float = Field(
        30.0, gt=0, description="frequency marching (ours): the data term starts at this resolution and reaches "
        "Nyquist at mid-run. On the test hinge (a 40° Fab light-chain turn, D=32, 5 Å/px) the full band from the "
        "start found the motion with 1 seed in 3 (the others stuck, data term 596 vs 461)",
    )  # fmt: skip
    sigma_A: float = Field(2.0, gt=0, description="width of each residue's Gaussian, Å (ours; paper: fixed per run)")
    rotation: Literal["quaternion", "rotvec", "sixd"] = Field(
        "sixd",
        description="how the decoder's rotation outputs are read: an axis-angle vector (uniform through and past "
        "180°), two columns of the rotation matrix (sixd, the only reading that can follow a full turn along a "
        "closed latent loop), or the paper's quaternion with real part 1, which never reaches 180° (.deformation). "
        "On igg-1d (360°) the quaternion's models stopped at ~175° (the states at 198-234° 23-48° short); rotvec's "
        "turned to within 10° up to 216°. On the test hinge (40°, D=32, seeds 0/1; Å per state) the three are "
        "alike: rotvec 0.45/0.44 and 0.27/0.91, sixd 0.47/0.99 and 0.34/1.40, quaternion 0.19/0.55 and 0.41/0.72",
    )
    encoder: Literal["amortised", "autodecode"] = Field(
        "amortised", description="amortised: an image encoder gives z; autodecode: a per-image latent table"
    )
    encoder_box: int = Field(64, ge=16, description="the encoder sees the images Fourier-cropped to this box")
    continuity: float = Field(0.1, ge=0, description="weight of the chain-continuity loss (paper: 0.1)")
    clash: float = Field(0.1, ge=0, description="weight of the clash loss (paper: 0.1)")
    domain_search_at: list[float] = Field(
        default_factory=lambda: [0.25, 0.45],
        description="fractions of the run at whose start every image's moving domains are searched over 576 "
        "rotations about their hinge (ours; [] turns it off; .body_search). Gradient descent alone reaches the "
        "states within ~60 degrees of the input model",
    )
    domain_search_resolution_A: float = Field(20.0, gt=0, description="the search compares images up to this "
                                            "resolution (ours)")  # fmt: skip
    domain_search_weight: float = Field(
        0.1,
        ge=0,
        description="weight of the pull towards each image's searched placement (Å^2 per band pixel, "
        "as the restraints); it falls linearly to 0 over a fifth of the run after each search (ours)",
    )
    domain_rigidity: float = Field(
        0.01,
        ge=0,
        description="weight of the restraint that keeps each searched domain rigid (Å^2 from its best rigid "
        "motion, per band pixel as the restraints), from the first search to the end (ours; .restraints)",
    )
    domain_latent_ring: float = Field(
        100.0,
        ge=0,
        description="weight of the pull of each image's latent mean towards a ring point at its searched turn "
        "(latent units^2 per image; two latent coordinates per domain), falling with the domain pull (ours; "
        ".body_targets): it closes the latent loop of a domain that turns through a full circle. On igg-1d "
        "(360°, input at 0°, sixd) 2.64 Å mean Cα RMSD, 16/20 states under 2 Å, AUC 0.439 against 2.81 Å, "
        "15/20 and 0.436 without it (seeds 1, 2: 1.74 and 3.12 Å; input at 126°: 0.76 Å, 20/20, 0.453)",
    )
    domain_turns: bool = Field(
        True,
        description="from the first search on, each searched domain turns about its hinge (refined by gradient) "
        "by the angle of its latent ring point, and the decoder only adds to that (ours; .hinge_turns). On igg-1d "
        "(360°, seed 0) from 0°: 1.84 Å mean Cα RMSD, worst state 3.2 Å, AUC 0.439, against 2.64 Å, 25.6 Å and "
        "0.439 without; from 126°: 0.55 Å, 19/20 states under 2 Å, AUC 0.455, against 0.76 Å, 20/20 and 0.453",
    )
    domain_hinge_refine: bool = Field(
        True,
        description="at each search after the first, the pivot and axis of each turning domain are chosen again "
        "on a sample of images, and the decoder's last layer restarts from zero when one moved (ours; "
        ".hinge_refine). On igg-1d (360°) from 0° the searched pivot was 3.8 Å off the true hinge line; chosen "
        "again, 0.9 Å: 1.00 and 0.77 Å mean Cα RMSD (seeds 0, 1), AUC 0.451 and 0.454, against 1.84 and 1.88 Å, "
        "0.439 and 0.440 without",
    )
    domain_hinge_min_shift_A: float = Field(
        1.0,
        ge=0,
        description="a hinge chosen again replaces the current one (and restarts the decoder's last layer) only "
        "when its pivot moved at least this far (Å) or its axis by domain_hinge_min_tilt_deg; else the "
        "current hinge stays and nothing restarts (ours). On igg-1d the pivot moved 2.8 Å from 0° (replaced); "
        "from 126° it moved 0.0 Å and the axis 1.0°, and replacing it cost 0.55 -> 0.89 Å mean Cα RMSD",
    )
    domain_hinge_min_tilt_deg: float = Field(
        2.0, ge=0, description="see domain_hinge_min_shift_A: the axis turn (degrees) that replaces a hinge"
    )
    consensus: str | None = Field(
        None, description="consensus map to check the model against (default: backprojected from the particles)"
    )
    optim: SphereOptimConfig = Field(default_factory=SphereOptimConfig)
    invert: bool | None = invert_field()
    snapshot_every: int = snapshot_every_field()
    load: str | None = load_field()
    device: str = "cpu"
    num_workers: int = Field(0, ge=0)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _read_older_versions(cls, data: Any) -> Any:
        """Version-1 runs had no domain search; version-1 and -2 runs no rigidity restraint and
        quaternion rotations unless they said otherwise; version-3 runs axis-angle rotations;
        none before version 4 a latent ring, none before version 5 domain turns, none before
        version 6 hinges chosen again at later searches."""
        if isinstance(data, dict) and data.get("method_version") in _OLDER_DEFAULTS:
            data = {**copy.deepcopy(_OLDER_DEFAULTS[data["method_version"]]), **data}
        return data

    @field_validator("domain_search_at")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 <= f < 1 for f in value):
            raise ValueError(f"domain_search_at takes fractions of the run in [0, 1), got {value}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _check(self) -> SphereConfig:
        if self.box is not None and (self.box < 16 or self.box % 2):
            raise ValueError(f"box must be even and at least 16, got {self.box}")
        return self

    @field_validator("chains")
    @classmethod
    def _chains(cls, value: list[str] | None) -> list[str] | None:
        names = [c for c in (x.strip() for x in value or []) if c]
        return names or None
