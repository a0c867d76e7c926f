"""What every volume representation provides."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

__all__ = ["Representation"]


class Representation(ABC):
    """A 3D density that can produce a voxel grid and be rendered by :func:`cryohet.imaging.render.render`.

    Coordinates follow cryohet's convention: positions in Å from the box centre (voxel
    ``D // 2``), volumes ``(z, y, x)``.
    """

    @abstractmethod
    def to_volume(self, box: int, apix: float) -> torch.Tensor:
        """Voxel grid ``(box, box, box)`` at ``apix`` Å/voxel, centre at ``box // 2``."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Device of the representation's tensors."""
