"""The typed config of a HetACUMN run (pydantic only: the command line reads its defaults).

HetACUMN (Chen, Wang, Yao 2023; METHODS.md §5): an amortised encoder predicts each image's
pose and conformation; a neural field decodes them (task 1); an auxiliary task renders
images at random poses from a latent and trains the encoder to recover that pose and
latent with the decoder's gradients stopped (task 2), which pushes viewing direction out
of the latent. No code or settings were published: the weights below are cryohet's.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ...config import StrictModel
from ...io.source import ParticleSource
from ..field_config import FieldConfig

__all__ = ["HetacumnConfig", "EncoderConfig", "PoseTaskConfig", "HetacumnOptimConfig"]


class EncoderConfig(StrictModel):
    """The shared pose + conformation encoder (:mod:`cryohet.networks.pose_encoder`)."""

    heads: int = Field(1, ge=1, description="pose heads per image (several: cryoSPIN's multi-head, best head wins)")
    input_box: int = Field(64, ge=16, description="images are Fourier-cropped to this box before the CNN")
    channels: tuple[int, ...] = Field(
        (16, 32, 64, 128), description="channels of the strided convolutions (at D=64 on one CPU thread, load 3.2: "
        "7 260 images/s; (32, 64, 128, 256) ran 1 490, below the 2 000 inference needs)"
    )  # fmt: skip
    hidden: int = Field(256, gt=0, description="width of the layer before the heads")


class PoseTaskConfig(StrictModel):
    """Task 2: images rendered at random poses train the encoder to recover pose and latent."""

    weight: float = Field(1.0, ge=0, description="weight of task 2 against task 1 (0: the ablation without it)")
    images: float = Field(1.0, gt=0, description="rendered images per real image of a batch")
    prior_fraction: float = Field(
        0.5, ge=0, le=1, description="share of rendered images whose latent is drawn from N(0, I) (the rest: the "
        "encoder's latents of the batch)"
    )  # fmt: skip
    latent_weight: float = Field(1.0, ge=0, description="weight of |E_z(rendered) - z|^2 in task 2")
    shift_weight: float = Field(1.0, ge=0, description="weight of the shift error (in units of the shift range)")


class HetacumnOptimConfig(StrictModel):
    batch_size: int = Field(64, gt=0)
    lr_encoder: float = Field(1e-3, gt=0)
    lr_field: float = Field(1e-3, gt=0)
    beta: float = Field(
        0.1, ge=0, description="weight of KL(q(z|image) || N(0, I)); measured on the two-state test set (D=24, SNR "
        "0.3, given poses): at 1 (the ELBO at unit noise) the latent collapsed (KL 0.01 per image, ARI 0 after 60 "
        "epochs); at 0.1 the states separated (ARI 0.90 after 80 epochs at batch 16)"
    )  # fmt: skip


class HetacumnConfig(StrictModel):
    """Everything that defines a HetACUMN run (the resolved ``config.yaml``)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs", "optim.batch_size", "snapshot_every")

    method: Literal["hetacumn"] = "hetacumn"
    method_version: int = 1
    data: ParticleSource
    out: str
    poses_mode: Literal["abinit", "fixed"] = Field(
        "abinit", description="abinit: the encoder predicts the poses (given ones ignored); fixed: keep the given poses"
    )
    zdim: int = Field(8, ge=1, description="latent dimension")
    box: int | None = Field(None, description="train at this box (Fourier-cropped); default: the data's")
    epochs: int = Field(30, ge=0)
    field: FieldConfig = Field(default_factory=FieldConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    pose_task: PoseTaskConfig = Field(default_factory=PoseTaskConfig)
    optim: HetacumnOptimConfig = Field(default_factory=HetacumnOptimConfig)
    snapshot_every: int = Field(
        1, ge=0, description="keep the model, latents and poses after every N-th epoch in RUN/epochs/ (and after "
        "the last; 0: none), for --epoch in analyze, volumes and select"
    )  # fmt: skip
    invert: bool | None = Field(
        None, description="multiply images by -1; default: decided from the data's contrast (protein must be bright)"
    )
    device: str = "cpu"
    num_workers: int = Field(0, ge=0)
    seed: int = 0
