"""Per-image latents: tables optimised row by row outside any DistributedDataParallel
module, and latents fitted against a fixed decoder (semi-amortised inference)."""

from .fit import fit_latents
from .table import LatentTable

__all__ = ["LatentTable", "fit_latents"]
