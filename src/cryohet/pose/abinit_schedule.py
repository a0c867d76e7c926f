"""The epochs of an ab initio run that searches poses: pretraining, search epochs, then the
method's own epochs (DRGN-AI's joint descent, HetACUMN's amortised epochs).

* **pretrain**: random rotations, zero shifts; the field learns the rotational average on
  the search's starting band;
* **search**: every image is searched against the field as trained so far; the band radius
  marches from the search's start radius to its end radius over these epochs (frequency
  marching; DRGN-AI's 12 -> 32 px at D=128);
* **later** (named by the method): the full band, Nyquist (``box / 2``).

Radii are Fourier pixels of the image box.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AbinitSchedule", "count_epochs"]


def count_epochs(images: int, n_images: int, minimum: int) -> int:
    """Epochs of ``n_images`` that give ``images`` image-passes (at least ``minimum``; 0 when ``images`` is 0)."""
    if images <= 0:
        return 0
    return max(minimum, -(-int(images) // max(1, int(n_images))))


@dataclass(frozen=True)
class AbinitSchedule:
    """Phase and band radius of each (0-based) epoch; see the module docstring."""

    pretrain_epochs: int
    search_epochs: int
    later_epochs: int
    radius_start_px: float
    radius_end_px: float
    box: int
    later: str = "sgd"

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.search_epochs + self.later_epochs

    def phase(self, epoch: int) -> str:
        """``"pretrain"``, ``"search"`` or the later phase's name."""
        if epoch < self.pretrain_epochs:
            return "pretrain"
        if epoch < self.pretrain_epochs + self.search_epochs:
            return "search"
        return self.later

    def radius(self, epoch: int) -> float:
        """Band radius (Fourier px) of the data term in ``epoch`` and of the search's last round."""
        phase = self.phase(epoch)
        if phase == "pretrain":
            return self.radius_start_px
        if phase == "search":
            i = epoch - self.pretrain_epochs
            r0, r1 = self.radius_start_px, self.radius_end_px
            return r0 + (r1 - r0) * (i + 1) / self.search_epochs
        return self.box / 2
