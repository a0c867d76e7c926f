"""Typed configuration of ``cryohet simulate`` (shared by the CLI and the Python API)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ..config import StrictModel
from .catalog import PRESETS

__all__ = ["SimulationConfig"]


class SimulationConfig(StrictModel):
    """What to simulate. Sizes in pixels unless the name says Å."""

    preset: str = Field(description="igg-1d, igg-rl, assembly or custom")
    out: Path
    n_images: int = Field(2000, gt=0)
    box: int = Field(64, ge=16, le=1024, description="image size D in pixels (even)")
    apix: float | None = Field(None, gt=0, description="Å/px; default: the preset's box in Å / D")
    snr: float = Field(0.05, description="signal-to-noise ratio (variance ratio), > 0")
    seed: int = 0
    n_states: int | None = Field(None, gt=0, description="default: the preset's")
    max_shift_px: float = Field(4.0, ge=0, description="shifts uniform in ±max_shift_px")
    defocus_min_um: float = Field(1.0, gt=0)
    defocus_max_um: float = Field(2.5, gt=0)
    blur_A: float = Field(1.0, gt=0, description="atomic Gaussian width (sigma, Å)")
    model: Path | None = Field(None, description="atomic model for 'custom' (or to replace a preset's)")
    moving: str | None = Field(None, description="custom hinge: moving atoms, e.g. 'L,H:1-230'")
    axis: str | None = Field(None, description="custom hinge: axis CA atoms, e.g. 'H:230,H:239'")
    angle_min_deg: float = 0.0
    angle_max_deg: float = 360.0
    chunk: int = Field(256, gt=0, description="images rendered per batch")
    device: str = Field(
        "cpu",
        description="where images are rendered: cpu or cuda[:N] (the noise is always drawn "
        "on the CPU from the seed, so a dataset differs between devices only by float rounding)",
    )
    overwrite: bool = False

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset '{v}' (choose from {', '.join(PRESETS)})")
        return v

    @field_validator("snr")
    @classmethod
    def _positive_snr(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"SNR must be > 0, got {v}")
        return v

    @field_validator("box")
    @classmethod
    def _even_box(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"box must be even, got {v}")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not (v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit())):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got '{v}'")
        return v

    @model_validator(mode="after")
    def _check(self) -> SimulationConfig:
        if self.defocus_max_um < self.defocus_min_um:
            raise ValueError("defocus_max_um must be >= defocus_min_um")
        if self.preset == "custom" and self.model is None:
            raise ValueError("preset 'custom' needs a model (--model X.pdb|X.cif)")
        if self.preset == "custom" and self.apix is None:
            raise ValueError("preset 'custom' needs --apix")
        return self

    def resolved_apix(self) -> float:
        """Pixel size in Å: given, or the preset's physical box divided by D."""
        if self.apix is not None:
            return float(self.apix)
        box_A = PRESETS[self.preset].box_A
        assert box_A is not None
        return box_A / self.box
