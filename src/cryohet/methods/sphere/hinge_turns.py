"""Searched domains that turn by an angle read from two latent coordinates.

After the first domain search (:mod:`.body_search`), each body ``b`` found (its residues,
hinge pivot ``p_b`` in Å from the box centre and unit axis ``a_b``) with a latent ring
(coordinates ``2b, 2b + 1``, :mod:`.body_targets`) turns, for an image of latent ``z``, by

    theta_b(z) = sign_b (atan2(z_2b+1, z_2b) - phase_b)        (radians)

about its hinge, on top of what the decoder does: a residue ``x`` of the body that the
decoder moves to ``R x + t`` ends at ``p + T (R x + t - p)``, ``T`` the turn by
``theta_b`` about ``a_b`` (rotations act on the left of column vectors). The ring's
``phase`` and ``sign`` are those fitted at the search, so a latent on its ring point
(``phase + sign theta``) turns the body by exactly the searched ``theta``. The decoder's
last layer is reset at that moment: from then on it only adds what the turn leaves.

**Why.** With the decoder alone reading every coordinate, the arc that the latents grow
before the first search (from the input model's state in both directions) stays in
coordinates the ring does not pull, and on igg-1d from the 0° model one far state's
particles split between the arc's two ends in every seed (:mod:`.body_targets`). A turn
that is a function of the ring's angle alone has one value per point of the circle: the
loop is closed by construction, and every image of a state turns its body by its ring
angle whatever its other coordinates hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import roma
import torch
from torch import nn

__all__ = ["HingeTurn", "HingeTurns"]


@dataclass(frozen=True)
class HingeTurn:
    """One body's turn: residue indices, pivot (Å from the box centre), unit axis, the
    first of its two latent coordinates, and the ring's phase (radians) and sign (±1)."""

    residues: torch.Tensor
    pivot_A: torch.Tensor
    axis: torch.Tensor
    coordinate: int
    phase: float
    sign: float


#: Å per unit of the learned pivot offsets (as the decoder's translations: Adam's steps in Å-sized units)
PIVOT_UNIT_A = 10.0


class HingeTurns(nn.Module):
    """The turns of a network (none until the first domain search); part of its state dict
    as plain tensors and numbers (``get_extra_state``), so checkpoints load without code.

    ``slots`` turns may be refined on the data: each has a learned pivot offset
    (``PIVOT_UNIT_A`` Å per unit) and axis offset (added to the searched axis, then
    normalised), both starting at 0 and registered from the start, so that the optimiser's
    parameters do not change when the turns begin."""

    def __init__(self, slots: int = 0) -> None:
        super().__init__()
        self.turns: list[HingeTurn] = []
        self.slots = int(slots)
        if self.slots:
            self.pivot_offsets = nn.Parameter(torch.zeros(self.slots, 3))
            self.axis_offsets = nn.Parameter(torch.zeros(self.slots, 3))

    def hinge(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn ``j``'s pivot ``(3,)`` Å and unit axis ``(3,)``, with the learned offsets."""
        t = self.turns[j]
        if j >= self.slots:
            return t.pivot_A, t.axis
        pivot = t.pivot_A.to(self.pivot_offsets) + PIVOT_UNIT_A * self.pivot_offsets[j]
        return pivot, nn.functional.normalize(t.axis.to(self.axis_offsets) + self.axis_offsets[j], dim=0)

    def __len__(self) -> int:
        return len(self.turns)

    def set(self, turns: list[HingeTurn]) -> None:
        """Start ``turns`` (their refinements from 0)."""
        self.turns = list(turns)
        if self.slots:
            with torch.no_grad():
                self.pivot_offsets.zero_()
                self.axis_offsets.zero_()

    def angles(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Each turn's angle ``(B,)`` (radians, right-handed about its axis) at latents ``z (B, zdim)``."""
        return [t.sign * (torch.atan2(z[:, t.coordinate + 1], z[:, t.coordinate]) - t.phase) for t in self.turns]

    def compose(
        self, rotations: torch.Tensor, shifts_A: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-residue transforms ``x -> R x + t`` (``(B, N, 3, 3)``, ``(B, N, 3)`` Å) with
        each body's turn composed after them (module docstring)."""
        if not self.turns:
            return rotations, shifts_A
        rot = rotations.expand(len(z), -1, -1, -1).clone()
        shift = shifts_A.expand(len(z), -1, -1).clone()
        for j, (t, theta) in enumerate(zip(self.turns, self.angles(z))):
            pivot, axis = (v.to(z) for v in self.hinge(j))
            res = t.residues.to(z.device)
            turn = roma.rotvec_to_rotmat(theta[:, None] * axis[None])  # (B, 3, 3)
            rot[:, res] = turn[:, None] @ rot[:, res]
            shift[:, res] = torch.einsum("bij,bnj->bni", turn, shift[:, res] - pivot) + pivot
        return rot, shift

    def get_extra_state(self) -> dict:
        return {
            "residues": [t.residues.cpu() for t in self.turns],
            "pivots_A": [t.pivot_A.cpu() for t in self.turns],
            "axes": [t.axis.cpu() for t in self.turns],
            "coordinates": [int(t.coordinate) for t in self.turns],
            "phases": [float(t.phase) for t in self.turns],
            "signs": [float(t.sign) for t in self.turns],
        }

    def set_extra_state(self, state: dict) -> None:
        self.turns = [
            HingeTurn(r, p, a, int(c), float(ph), float(s))
            for r, p, a, c, ph, s in zip(
                state["residues"], state["pivots_A"], state["axes"], state["coordinates"], state["phases"],
                state["signs"],
            )
        ]  # fmt: skip
