"""The typed options of a :class:`~cryohet.representations.neural_field.NeuralField`, shared
by the methods that decode with one (DRGN-AI, HetACUMN). Pydantic only, so the command line
reads them without importing torch (the representations package imports torch)."""

from __future__ import annotations

from pydantic import Field

from ..config import StrictModel

__all__ = ["FieldConfig"]


class FieldConfig(StrictModel):
    """The neural-field hypervolume V(k, z) (DRGN-AI's defaults)."""

    hidden: int = Field(256, gt=0)
    blocks: int = Field(3, ge=0, description="residual blocks")
    features: int = Field(192, gt=0, description="Gaussian Fourier features of the 3D frequency")
    sigma: float = Field(0.5, gt=0, description="their scale (times D/2)")
