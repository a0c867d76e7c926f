"""Per-image pose table: a rotation (continuous 6D) and a shift (RELION origin, Å) per image.

Stored as one :class:`~cryohet.latents.table.LatentTable` of 8 columns (6D rotation,
then ``x, y`` origin in Å), so poses get the same row-wise Adam, ``assign`` and
distributed row synchronisation as latents, and stay outside any DDP-wrapped module.
The 6D columns are the first two columns of the rotation matrix before Gram-Schmidt
(:func:`cryohet.geometry.rotations.sixd_to_matrix`); the matrix is RELION's ``A``
(``x_img = A @ x_vol``).
"""

from __future__ import annotations

import torch

from ..geometry.rotations import matrix_to_sixd, sixd_to_matrix
from ..latents.table import LatentTable

__all__ = ["PoseTable"]


class PoseTable:
    """``N`` poses with per-row Adam; rows start at the identity and zero shift."""

    def __init__(self, n: int, device: torch.device | str = "cpu") -> None:
        self.table = LatentTable(n, 8, init_std=0.0, device=device)
        eye = torch.eye(3, device=self.table.z.device).expand(n, 3, 3)
        self.table.assign(torch.arange(n, device=self.table.z.device), self._pack(eye, torch.zeros(n, 2)))

    def __len__(self) -> int:
        return int(self.table.z.shape[0])

    def _pack(self, rotations: torch.Tensor, shifts_A: torch.Tensor) -> torch.Tensor:
        dev = self.table.z.device
        return torch.cat([matrix_to_sixd(rotations.to(dev, torch.float32)), shifts_A.to(dev, torch.float32)], dim=-1)

    def set(self, index: torch.Tensor, rotations: torch.Tensor, shifts_A: torch.Tensor) -> None:
        """Rows ``index`` become these poses (restarting their Adam moments)."""
        self.table.assign(index, self._pack(rotations, shifts_A))

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Rows as a leaf ``(B, 8)`` tensor that collects gradients (see :meth:`unpack`)."""
        return self.table.batch(index)

    @staticmethod
    def unpack(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 8)`` -> rotations ``(B, 3, 3)`` (Gram-Schmidt of the 6D part) and shifts ``(B, 2)`` Å."""
        return sixd_to_matrix(rows[..., :6]), rows[..., 6:]

    def poses(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotations ``(N|B, 3, 3)`` and shifts ``(N|B, 2)`` Å (no gradient)."""
        rows = self.table.z if index is None else self.table.z[index]
        with torch.no_grad():
            return self.unpack(rows)

    def step(self, index: torch.Tensor, grad: torch.Tensor, lr_rotation: float, lr_shift_A: float) -> None:
        """One Adam step on rows ``index``: ``lr_rotation`` on the 6D columns, ``lr_shift_A`` (Å) on the shifts."""
        lr = torch.tensor([lr_rotation] * 6 + [lr_shift_A] * 2, device=self.table.z.device)
        self.table.step(index, grad, lr)

    def sync_rows(self, index: torch.Tensor) -> None:
        self.table.sync_rows(index)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.table.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.table.load_state_dict(state)
