"""Isotropic Gaussian mixtures, one or a batch of them (one per image).

Density (positions and widths in Å from the box centre, ``a_i`` = value at the centre)::

    rho(p) = sum_i a_i exp(-|p - c_i|^2 / (2 sigma_i^2))

A mixture may be *batched*: centres ``(B, G, 3)``, amplitudes ``(B, G)``, widths ``(G,)``
or ``(B, G)``: one mixture per image, as a decoder of per-image latents produces
(CryoSPIRE's part motion and occupancy, a per-image deformed atomic model). Its central
slices are analytic (:func:`cryohet.imaging.gaussians.gaussian_projection_ft`); a batch
of 1 is shared by every rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..imaging.bands import FourierBand
from ..imaging.gaussians import gaussian_projection_ft, voxelize_gaussians
from .base import Representation

__all__ = ["GaussianMixture", "peak_from_mass"]

_NORM3 = (2.0 * math.pi) ** 1.5


def peak_from_mass(mass: torch.Tensor | float, sigma: torch.Tensor | float) -> torch.Tensor | float:
    """Peak value ``a`` of a 3D Gaussian of integral ``mass`` and width ``sigma``:
    ``a = mass / ((2 pi)^{3/2} sigma^3)`` (``mass`` per unit volume of ``sigma``'s length unit,
    e.g. voxel-sum units with ``sigma`` in voxels)."""
    return mass / (_NORM3 * sigma**3)


@dataclass
class GaussianMixture(Representation):
    """``rho(p) = sum_i a_i exp(-|p - c_i|^2 / (2 sigma_i^2))``, one or a batch.

    Attributes:
        centres_A: ``(G, 3)`` or ``(B, G, 3)`` centres ``(x, y, z)`` in Å from the box centre.
        amplitudes: ``(G,)`` or ``(B, G)``: density at the centres (voxel-value units).
        sigmas_A: scalar, ``(G,)`` or ``(B, G)`` widths in Å (a scalar is expanded to ``(G,)``).
        labels: optional ``(G,)`` integer part/segment labels.
        occupancy: optional ``(G,)`` or ``(B, G)`` gates in [0, 1] already applied to the
            amplitudes (compositional models report them; rendering ignores them).
    """

    centres_A: torch.Tensor
    amplitudes: torch.Tensor
    sigmas_A: torch.Tensor
    labels: torch.Tensor | None = None
    occupancy: torch.Tensor | None = None

    def __post_init__(self) -> None:
        c = self.centres_A
        if c.ndim not in (2, 3) or c.shape[-1] != 3:
            raise ValueError(f"centres_A must be (G, 3) or (B, G, 3), got {tuple(c.shape)}")
        g = c.shape[-2]
        s = torch.as_tensor(self.sigmas_A, device=c.device)
        if not s.is_floating_point():
            s = s.to(c.dtype)
        self.sigmas_A = s.expand(g) if s.ndim == 0 else s
        lead = tuple(c.shape[:-1])  # (G,) or (B, G)
        if tuple(self.amplitudes.shape) != lead:
            raise ValueError(f"amplitudes must be {lead}, got {tuple(self.amplitudes.shape)}")
        if self.sigmas_A.shape[-1] != g or self.sigmas_A.ndim > c.ndim - 1:
            raise ValueError(f"sigmas_A must be (G,) or {lead}, got {tuple(self.sigmas_A.shape)}")
        if self.labels is not None and self.labels.shape != (g,):
            raise ValueError(f"labels must be ({g},), got {tuple(self.labels.shape)}")

    # ------------------------------------------------------------------ structure
    def __len__(self) -> int:
        """Number of Gaussians ``G``."""
        return int(self.centres_A.shape[-2])

    @property
    def batch_size(self) -> int | None:
        """``B`` of a batched mixture, None for a single one."""
        return int(self.centres_A.shape[0]) if self.centres_A.ndim == 3 else None

    @property
    def device(self) -> torch.device:
        return self.centres_A.device

    def subset(self, keep: torch.Tensor) -> GaussianMixture:
        """The Gaussians selected by a boolean mask or index tensor (every image of a batch)."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[..., keep] if t.ndim and t.shape[-1] == len(self) else t

        return GaussianMixture(
            self.centres_A[..., keep, :],
            self.amplitudes[..., keep],
            self.sigmas_A[..., keep],
            None if self.labels is None else self.labels[keep],
            pick(self.occupancy),
        )

    def member(self, j: int) -> GaussianMixture:
        """Mixture ``j`` of a batch, as a batch of one (shared by every rotation it renders)."""
        if self.batch_size is None:
            raise ValueError("member() needs a batched mixture")

        def one(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else (t[j : j + 1] if t.ndim == self.centres_A.ndim - 1 else t)

        return GaussianMixture(
            self.centres_A[j : j + 1], self.amplitudes[j : j + 1], one(self.sigmas_A), self.labels, one(self.occupancy)
        )

    def expand(self, b: int) -> GaussianMixture:
        """A batch of one repeated ``b`` times (views, no copy)."""
        if self.batch_size != 1:
            raise ValueError("expand() needs a batch of one")

        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else (t.expand(b, *t.shape[1:]) if t.ndim == self.centres_A.ndim - 1 else t)

        return GaussianMixture(
            self.centres_A.expand(b, -1, -1),
            self.amplitudes.expand(b, -1),
            rep(self.sigmas_A),
            self.labels,
            rep(self.occupancy),
        )

    # ------------------------------------------------------------------ the seam
    def slices(self, rotations: torch.Tensor, band: FourierBand, z: torch.Tensor | None = None) -> torch.Tensor:
        """Analytic central slices ``(B, Ny, Nx)`` (exact, band-limited by the band); ``z`` ignored."""
        dev = self.centres_A.device
        return gaussian_projection_ft(
            self.centres_A,
            self.amplitudes,
            self.sigmas_A,
            rotations,
            band.kx_per_A.to(dev),
            band.ky_per_A.to(dev),
            band.apix,
        )

    def to_volume(self, box: int, apix: float, band_limit: bool = True) -> torch.Tensor:
        """Voxelisation (:func:`cryohet.imaging.gaussians.voxelize_gaussians`) of a single mixture
        (or a batch of one)."""
        if self.batch_size not in (None, 1):
            raise ValueError("to_volume() needs a single mixture; use member(j)")
        squeeze = self.batch_size == 1
        c = self.centres_A[0] if squeeze else self.centres_A
        a = self.amplitudes[0] if squeeze else self.amplitudes
        s = self.sigmas_A[0] if squeeze and self.sigmas_A.ndim == 2 else self.sigmas_A
        return voxelize_gaussians(c, a, s, box, apix, band_limit=band_limit)
