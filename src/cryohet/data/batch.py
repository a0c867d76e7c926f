"""A typed batch of particles: what every trainer, search and reconstruction reads.

Conventions (cryohet's; see docs/CONVENTIONS.md):

* ``index``: int64 ``(B,)``, rows of the :class:`~cryohet.data.dataset.ParticleDataset`
  (``dataset.meta.original_index[index]`` is the row of the original file);
* ``images``: float32 ``(B, D, D)``, ``(y, x)``, at the dataset's box ``D``;
* ``ctf_params``: float32 ``(B, 9)`` in :data:`cryohet.imaging.ctf.CTF_COLUMNS` order, or
  None for data without CTF;
* ``rotations``: float32 ``(B, 3, 3)`` RELION ``A`` (``x_img = A @ x_vol``) and
  ``shifts_A``: float32 ``(B, 2)`` RELION origins in Å, or None for data without poses.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

__all__ = ["ParticleBatch"]


@dataclass
class ParticleBatch:
    """Images of a batch of particles with their CTF and poses (see the module docstring)."""

    index: torch.Tensor
    images: torch.Tensor
    ctf_params: torch.Tensor | None = None
    rotations: torch.Tensor | None = None
    shifts_A: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def has_poses(self) -> bool:
        return self.rotations is not None

    def _map(self, fn) -> ParticleBatch:
        return replace(self, **{f.name: None if (v := getattr(self, f.name)) is None else fn(v) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ParticleBatch:
        """The batch on ``device`` (tensors that are already there are not copied)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> ParticleBatch:
        """Page-locked copies (called by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: t.pin_memory())

    def rows(self, sel: torch.Tensor | slice) -> ParticleBatch:
        """The images selected by ``sel`` (a slice, boolean mask or index tensor)."""
        return self._map(lambda t: t[sel])
