"""Configuration of DRGN-AI training (``cryohet train drgnai``); YAML round-trips it.

Defaults follow DRGN-AI (ml-struct-bio/drgnai, METHODS.md §3) where its code states them
— the hypervolume (192 Fourier features of sigma 0.5, 256 wide, 3 residual blocks), the
base pose grid (HEALPix level 2: 4 608 rotations), 4 refinement rounds keeping 8 poses,
band limits 12 → 32 px at D=128, learning rate 1e-3 for the poses —
and are ours, measured and said so, where cryohet changed the schedule to be an order of
magnitude faster (fewer search epochs, larger batches, latent clusters in the search).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ...config import StrictModel
from ...io.source import ParticleSource
from ..field_config import FieldConfig
from ..run_fields import invert_field, load_field, snapshot_every_field
from ..search_config import SearchConfig

__all__ = ["DrgnaiConfig", "FieldConfig", "SearchConfig", "OptimConfig"]


class OptimConfig(StrictModel):
    """Learning rates and batches (DRGN-AI's rates; batch sizes ours)."""

    lr_field: float = Field(
        1e-3, gt=0, description="ours: DRGN-AI has 1e-4, which at D=32 needed several times more search steps"
    )
    lr_latents: float = Field(
        0.1, gt=0, description="ours (DRGN-AI: 1e-2): two states separated (ARI 0.95 vs 0.40) in 80 epochs at D=24"
    )
    lr_rotations: float = Field(1e-3, gt=0, description="Adam on the 6D rotation parameters")
    lr_shifts_px: float = Field(1e-3, gt=0, description="Adam on the shifts, in pixels per step")
    batch_size: int = Field(32, gt=0)


class DrgnaiConfig(StrictModel):
    """Everything that defines a DRGN-AI run (the resolved ``config.yaml``)."""

    #: What ``--resume`` may change besides the device and workers.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs_sgd", "optim.batch_size", "search.chunk_images", "snapshot_every")

    method: Literal["drgnai"] = "drgnai"
    method_version: int = Field(
        2, description="2: the outputs hold the field averaged over the joint epochs' last steps "
        "(field_average_epochs), and latent_init subspace is the default with given poses too; version-1 runs "
        "(no average; latent_init auto: the subspace after an ab initio search only) are read as such"
    )  # fmt: skip
    data: ParticleSource
    out: str
    poses_mode: Literal["abinit", "refine", "fixed"] = Field(
        "abinit",
        description="abinit: no input poses (any given are ignored); refine: start from the given poses; "
        "fixed: keep them",
    )
    zdim: int = Field(8, ge=0, description="latent dimension; 0 = homogeneous")
    box: int | None = Field(None, description="train at this box (Fourier-cropped); default: the data's")
    pretrain_images: int = Field(
        10000, ge=0, description="images of the pretraining pass (random poses, the field only: DRGN-AI's 10k)"
    )
    search_images: int = Field(
        40000, ge=0,
        description="image-searches in all (ours: DRGN-AI does about 500 000); the search epochs are "
        "max(2, ceil(search_images / N))",
    )  # fmt: skip
    epochs_sgd: int = Field(20, ge=0, description="joint gradient-descent epochs on poses, latents and field")
    latent_init: Literal["subspace", "random"] = Field(
        "subspace",
        description="ours: subspace: at the first joint epoch (after the search; at the start with given poses) set "
        "the latents to the coordinates of a linear subspace of the heterogeneity (probabilistic PCA, zdim "
        "components, reconstruction.linear_subspace) fitted at the table's poses, scaled to std 0.5; random: keep "
        "the auto-decoded latents. On igg-1d (D=64, SNR 0.05) the searched latents carried no state (k-NN R^2 of "
        "the Fab angle 0.03, 0.13-0.21 after 5 more epochs), the subspace's 0.81; with the true poses (fixed) "
        "per-state AUC after 5 epochs 0.419 seeded against 0.405 random (k-means ARI 0.42 against 0.01)",
    )
    latent_init_iterations: int = Field(6, ge=1, description="EM iterations of the subspace (latent_init)")
    frame_align_every: int = Field(
        4, ge=0,
        description="ours: every this many joint epochs of a heterogeneous ab initio run, the poses of each latent "
        "cluster are turned into one common frame (pose.frames: the cluster maps aligned on the rigid region); 0: "
        "never. On igg-1d (D=64, SNR 0.05) one alignment after 4 joint epochs took the median pose error from 6.1 to "
        "5.5 degrees",
    )  # fmt: skip
    frame_clusters: int = Field(16, ge=2, description="latent clusters whose frames are aligned (frame_align_every)")
    field_average_epochs: float = Field(
        2.0, ge=0,
        description="ours: model.pt, map.mrc and the epoch snapshots hold the field's weights averaged over the joint "
        "epochs' steps, a step this many epochs old counting 1/e as much as the newest (Polyak averaging; training "
        "goes on with the field's own weights); 0: the last step's weights. On igg-1d (D=64, SNR 0.05) per-state AUC "
        "after 20 joint epochs 0.399 averaged against 0.393 (ab initio), 0.433 against 0.427 (fixed poses)",
    )  # fmt: skip
    field: FieldConfig = Field(default_factory=FieldConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    invert: bool | None = invert_field()
    snapshot_every: int = snapshot_every_field()
    load: str | None = load_field()
    device: str = "cpu"
    amp: bool = Field(True, description="mixed precision (bf16 autocast) for the field on CUDA")
    num_workers: int = Field(0, ge=0)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _read_older_versions(cls, data: Any) -> Any:
        """Version-1 runs wrote the last step's field (no average) and seeded the latents only
        after an ab initio search (``latent_init`` auto, or none before it existed)."""
        if not isinstance(data, dict) or data.get("method_version") != 1:
            return data
        data = {"field_average_epochs": 0.0, **data}
        if data.get("latent_init", "random") == "auto":
            abinit = data.get("poses_mode", "abinit") == "abinit"
            data["latent_init"] = "subspace" if abinit else "random"
        elif "latent_init" not in data:
            data["latent_init"] = "random"
        return data

    @model_validator(mode="after")
    def _check(self) -> DrgnaiConfig:
        if self.box is not None and (self.box < 16 or self.box % 2):
            raise ValueError(f"box must be even and at least 16, got {self.box}")
        return self

    def search_radii_px(self, box: int, apix: float) -> tuple[float, float]:
        """The search's start and end band radii (Fourier px): :meth:`SearchConfig.radii_px`."""
        return self.search.radii_px(box, apix)

    def search_epochs(self, n_images: int) -> int:
        """Search epochs for ``n_images`` (none in fixed and refine modes)."""
        if self.poses_mode != "abinit":
            return 0
        from ...pose.abinit_schedule import count_epochs

        return count_epochs(self.search_images, n_images, 2)

    def pretrain_epochs(self, n_images: int) -> int:
        if self.poses_mode != "abinit":
            return 0
        from ...pose.abinit_schedule import count_epochs

        return count_epochs(self.pretrain_images, n_images, 1)
