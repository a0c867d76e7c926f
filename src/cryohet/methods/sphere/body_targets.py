"""Per-image targets from the body search, and the pull towards them.

After a search (:mod:`.body_search`), image ``i`` has, for each body ``b`` where a
candidate beat its current fit, a rotation ``S_ib`` about the body's pivot ``p_b``. The
pull is the mean squared distance (Å^2) between the body's residues as the network moves
them and where the target puts them, ``p_b + S_ib (x - p_b)``; images without a target
add nothing. The search per batch (:func:`search_batch`) tries turns about the body's
hinge axis every 5° (72), then refines the best by ±2.5° and ±1.25°.

The table is per image, outside the network (and outside any DDP wrapper): every rank
searches its own rows and the tables are summed over ranks, so each rank holds all rows.
"""

from __future__ import annotations

import torch

from ...imaging.likelihood import ImageLikelihood
from ...imaging.projection import FourierVolume
from ...representations.render import BandBatch
from .body_search import Body, BodyScorer, hinge_rotations
from .network import SphereNetwork
from .restraints import rigidity_loss

__all__ = ["BodyTargets", "search_batch"]

_GRID_STEP_DEG = 5.0
_REFINE_STEPS_DEG = (2.5, 1.25)


class BodyTargets:
    """Target rotations ``(N, 3, 3)`` and flags ``(N,)`` per body (module docstring)."""

    def __init__(
        self, bodies: list[Body], n_images: int, device: torch.device | str, core: torch.Tensor | None = None
    ) -> None:
        self.bodies = bodies
        #: residue indices of the static core (movable residues in no body), kept rigid too
        self.core = core.to(device) if core is not None else torch.zeros(0, dtype=torch.long, device=device)
        self.rotations = [torch.eye(3, device=device).repeat(n_images, 1, 1) for _ in bodies]
        self.active = [torch.zeros(n_images, dtype=torch.bool, device=device) for _ in bodies]

    def set(self, j: int, rows: torch.Tensor, rotations: torch.Tensor, better: torch.Tensor) -> None:
        """Body ``j``'s targets for dataset ``rows`` where ``better``."""
        self.rotations[j][rows] = torch.where(better[:, None, None], rotations, self.rotations[j][rows])
        self.active[j][rows] = better

    def tables(self) -> list[torch.Tensor]:
        """The tensors that ranks sum (each row is non-zero on the one rank that searched it)."""
        out = []
        for rot, act in zip(self.rotations, self.active):
            out += [torch.where(act[:, None, None], rot, torch.zeros_like(rot)), act.to(rot.dtype)]
        return out

    def set_tables(self, tables: list[torch.Tensor]) -> None:
        for j in range(len(self.bodies)):
            rot, act = tables[2 * j], tables[2 * j + 1] > 0.5
            eye = torch.eye(3, device=rot.device, dtype=rot.dtype)
            self.rotations[j] = torch.where(act[:, None, None], rot, eye)
            self.active[j] = act

    def loss(self, moved_A: torch.Tensor, index: torch.Tensor, base_A: torch.Tensor) -> torch.Tensor:
        """Per-image ``(B,)`` pull (Å^2, module docstring) of moved residues ``(B, R, 3)``."""
        out = moved_A.new_zeros(moved_A.shape[0])
        for j, body in enumerate(self.bodies):
            act = self.active[j][index].to(moved_A.dtype)
            if not bool(act.any()):
                continue
            offsets = base_A[body.residues] - body.pivot_A
            target = body.pivot_A + torch.einsum("bij,rj->bri", self.rotations[j][index].to(moved_A), offsets)
            out = out + act * ((moved_A[:, body.residues] - target) ** 2).sum(-1).mean(-1)
        return out

    def rigidity(self, moved_A: torch.Tensor, base_A: torch.Tensor) -> torch.Tensor:
        """Per-image ``(B,)`` sum over the bodies and the static core of
        :func:`.restraints.rigidity_loss` (Å^2). The core counts as well: on igg-1d, with
        the bodies alone kept rigid, the heavy chain's Fc half turned ~90° with the Fab
        (its segment continued the Fab's), where the Fc dimer's other half stayed."""
        out = moved_A.new_zeros(moved_A.shape[0])
        for residues in [b.residues for b in self.bodies] + ([self.core] if len(self.core) >= 3 else []):
            out = out + rigidity_loss(moved_A, base_A, residues)
        return out

    def state_dict(self) -> dict:
        return {
            "residues": [b.residues.cpu() for b in self.bodies],
            "pivots_A": [b.pivot_A.cpu() for b in self.bodies],
            "axes": [b.axis.cpu() for b in self.bodies],
            "rotations": [r.cpu() for r in self.rotations],
            "active": [a.cpu() for a in self.active],
            "core": self.core.cpu(),
        }

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str) -> BodyTargets:
        bodies = [
            Body(r.to(device), p.to(device), a.to(device))
            for r, p, a in zip(state["residues"], state["pivots_A"], state["axes"])
        ]
        n_images = int(state["active"][0].shape[0]) if bodies else 0
        out = cls(bodies, n_images, device, state.get("core"))
        out.rotations = [r.to(device) for r in state["rotations"]]
        out.active = [a.to(device) for a in state["active"]]
        return out


def search_batch(
    net: SphereNetwork,
    body: Body,
    bb: BandBatch,
    z: torch.Tensor,
    likelihood: ImageLikelihood,
    volume: FourierVolume | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best body rotations ``(B, 3, 3)`` of a batch (the turn about the hinge axis on a 5°
    grid, then refined) and whether each beats the image's current fit ``(B,)``.
    ``volume``: the body's :func:`~.body_search.body_volume` on this band, made once."""
    scorer = BodyScorer.prepare(net, body, bb, z, likelihood, volume)
    device = bb.observed.device
    angle = torch.arange(0.0, 360.0, _GRID_STEP_DEG, device=device)
    index, best = scorer.best(hinge_rotations(body.axis, angle))
    angle = angle[index]
    for step in _REFINE_STEPS_DEG:
        local = angle[:, None] + torch.tensor([-step, 0.0, step], device=device)[None]  # (B, 3)
        index, best = scorer.best(hinge_rotations(body.axis, local))
        angle = local[torch.arange(len(index), device=device), index]
    return hinge_rotations(body.axis, angle), best < scorer.current
