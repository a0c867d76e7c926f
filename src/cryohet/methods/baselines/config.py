"""The configs of the baselines (``cryohet train homogeneous|oracle|classify3d|pca``).

Pure pydantic, apart from the trainers (:mod:`.common`, :mod:`.homogeneous`, ...), so the
command line reads their defaults without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from ...config import StrictModel
from ...io.source import ParticleSource
from ..run_fields import invert_field

__all__ = ["BaselineConfig", "HomogeneousConfig", "OracleConfig", "Classify3DConfig", "PCAConfig"]


class BaselineConfig(StrictModel):
    """Fields every baseline takes (each method's config derives from this)."""

    #: What ``--resume`` may change besides the device (sums do not depend on the batch size).
    RESUMABLE: ClassVar[tuple[str, ...]] = ("batch_size",)

    method: str
    method_version: int = 1
    data: ParticleSource
    out: str
    box: int | None = Field(None, gt=1, description="work at this box (Fourier-cropped); default: the data's")
    invert: bool | None = invert_field()
    device: str = "cpu"
    batch_size: int = Field(256, gt=0, description="images per batch (reading, projection, backprojection)")
    seed: int = 0


class HomogeneousConfig(BaselineConfig):
    """``cryohet train homogeneous``: consensus reconstruction (no options of its own)."""

    method: Literal["homogeneous"] = "homogeneous"


class OracleConfig(BaselineConfig):
    """``cryohet train oracle``: per-state maps from ground-truth labels."""

    method: Literal["oracle"] = "oracle"
    labels: Path = Field(..., description="(N,) integer state labels (.npy), one per particle of the full set")


class Classify3DConfig(BaselineConfig):
    """``cryohet train classify3d``: K-class EM with fixed poses."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("batch_size", "iterations")  # more EM iterations

    method: Literal["classify3d"] = "classify3d"
    classes: int = Field(4, ge=2, description="number of classes K")
    iterations: int = Field(15, ge=1, description="EM iterations (at most)")
    stop_changed: float = Field(
        0.001, ge=0, lt=1, description="stop early once at most this fraction of images changed class in an iteration"
    )
    max_resolution_A: float | None = Field(
        None, gt=0, description="E-step resolution limit (Å); default: consensus FSC 0.143 + 2 shells"
    )
    posterior_floor: float = Field(1e-3, ge=0, lt=1, description="posteriors below this are dropped in the M-step")
    min_class_fraction: float = Field(0.01, ge=0, lt=1, description="re-seed a class whose share falls below this")
    init: Literal["pca", "random"] = Field(
        "pca", description="initial split: k-means of a quick PCA's latents (ours), or random (RELION's)"
    )
    init_iterations: int = Field(8, ge=1, description="EM iterations of the initial PCA")


class PCAConfig(BaselineConfig):
    """``cryohet train pca``: probabilistic PCA of the heterogeneity (3DVA-like)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("batch_size", "iterations")  # more EM iterations

    method: Literal["pca"] = "pca"
    components: int = Field(3, ge=1, description="number of components k (latent dimension)")
    iterations: int = Field(20, ge=1, description="EM iterations")
    max_resolution_A: float | None = Field(
        None, gt=0, description="low-pass limit (Å); default: consensus FSC 0.143 + 2 shells"
    )
    mask: Path | None = Field(
        None, description="real-space mask (.mrc) at the working box; default: from the consensus"
    )
    mask_threshold: float = Field(
        0.05, gt=0, lt=1, description="consensus mask: threshold as a fraction of the maximum"
    )
    mask_lowpass_A: float | None = Field(
        20.0, gt=0, description="consensus mask: the consensus low-passed to this resolution (Å) before the "
        "threshold, where its Nyquist is finer (None: as it is; noise kept in the mask is fitted by the components)"
    )  # fmt: skip
