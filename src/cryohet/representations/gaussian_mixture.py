"""Isotropic Gaussian mixtures: centres, amplitudes, widths and optional part labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..imaging.gaussians import voxelize_gaussians
from .base import Representation

__all__ = ["GaussianMixture"]


@dataclass
class GaussianMixture(Representation):
    """``rho(p) = sum_i a_i exp(-|p - c_i|^2 / (2 sigma_i^2))``.

    Attributes:
        centers_A: ``(G, 3)`` centres ``(x, y, z)`` in Å from the box centre.
        amplitudes: ``(G,)`` density at the centres (voxel-value units).
        sigmas_A: ``(G,)`` widths in Å (a scalar tensor is expanded).
        labels: optional ``(G,)`` integer part/segment labels.
    """

    centers_A: torch.Tensor
    amplitudes: torch.Tensor
    sigmas_A: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        g = self.centers_A.shape[0]
        if self.centers_A.shape != (g, 3):
            raise ValueError(f"centers_A must be (G, 3), got {tuple(self.centers_A.shape)}")
        s = torch.as_tensor(self.sigmas_A, device=self.centers_A.device, dtype=self.centers_A.dtype)
        self.sigmas_A = s.expand(g) if s.ndim == 0 else s
        for name in ("amplitudes", "sigmas_A"):
            if getattr(self, name).shape != (g,):
                raise ValueError(f"{name} must be ({g},), got {tuple(getattr(self, name).shape)}")
        if self.labels is not None and self.labels.shape != (g,):
            raise ValueError(f"labels must be ({g},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.centers_A.shape[0])

    @property
    def device(self) -> torch.device:
        return self.centers_A.device

    def subset(self, keep: torch.Tensor) -> GaussianMixture:
        """The Gaussians selected by a boolean mask or index tensor."""
        return GaussianMixture(
            self.centers_A[keep],
            self.amplitudes[keep],
            self.sigmas_A[keep],
            None if self.labels is None else self.labels[keep],
        )

    def to_volume(self, box: int, apix: float, band_limit: bool = True) -> torch.Tensor:
        """Voxelisation (:func:`cryohet.imaging.gaussians.voxelize_gaussians`)."""
        return voxelize_gaussians(self.centers_A, self.amplitudes, self.sigmas_A, box, apix, band_limit=band_limit)
