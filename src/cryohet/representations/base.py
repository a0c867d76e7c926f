"""The render seam: what every volume representation answers.

A representation answers **central slices**: for rotations (RELION ``A``,
``x_img = A @ x_vol``) and a :class:`~cryohet.imaging.bands.FourierBand`, the centred
DFT of the projection along z of the rotated density, on the band's frequencies —
complex, in pixel-sum units, **without CTF and without shift**. Conditional
representations (a decoder of a latent ``z``) take ``z``; fixed ones ignore it.

CTF, shift phase and likelihood are composed around this one call in
:mod:`cryohet.representations.render`, so a pose search, a latent search and a training
step that use the same representation and band cannot disagree about what an image
should look like.

Positions are in Å from the box centre (voxel ``D // 2``), volumes ``(z, y, x)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import torch

from ..imaging.bands import FourierBand

__all__ = ["Representation", "SliceSource"]


@runtime_checkable
class SliceSource(Protocol):
    """Anything that answers central slices on a band (the render seam)."""

    def slices(self, rotations: torch.Tensor, band: FourierBand, z: torch.Tensor | None = None) -> torch.Tensor:
        """Complex ``(B, Ny, Nx)`` central slices for rotations ``(B, 3, 3)`` (and latents
        ``z (B, zdim)`` for conditional representations); no CTF, no shift."""
        ...


class Representation(ABC):
    """A 3D density: answers central slices (the seam) and produces voxel grids."""

    @abstractmethod
    def slices(self, rotations: torch.Tensor, band: FourierBand, z: torch.Tensor | None = None) -> torch.Tensor:
        """See :class:`SliceSource`."""

    @abstractmethod
    def to_volume(self, box: int, apix: float) -> torch.Tensor:
        """Voxel grid ``(box, box, box)`` at ``apix`` Å/voxel, centre at ``box // 2``."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Device of the representation's tensors."""
