"""Per-image targets from the body search, and the pull towards them.

After a search (:mod:`.body_search`), image ``i`` has, for each body ``b`` where a
candidate beat its current fit, a rotation ``S_ib`` about the body's pivot ``p_b``. The
pull is the mean squared distance (Å^2) between the body's residues as the network moves
them and where the target puts them, ``p_b + S_ib (x - p_b)``; images without a target
add nothing.

**The latent ring** (:meth:`BodyTargets.latent_ring`). While the pull lasts, each image's
latent mean is also drawn, in the two latent coordinates ``2b, 2b + 1`` of body ``b``
(bodies beyond ``zdim / 2`` have none), towards ``rho (cos theta, sin theta)``, where
``theta`` is the image's searched turn about the hinge, the ring turned and oriented
(``phase + sign theta``) to fit the latents as they are at the search
(:meth:`BodyTargets.fit_rings`), so a second search does not move them. Why: the latents of a domain
that turns through a full circle must close into a loop for every state to have one
place. Without this, on igg-1d (D=64, 360°, input model at 0°) the latents grew from the
input model's state in both directions into an open arc whose two ends both decoded the
far side; one far state's particles split between the two ends (8.8 latent units of
spread against 0.6–1.5 for the others), so its mean latent fell in the arc's middle and
decoded a model 25–30 Å off. The ring only seeds the loop: its weight falls with the pull.

What the ring leaves, and three tries that did not fix it (igg-1d, session 19). With the
ring, one far state (234°) still splits from 0°, in all three seeds run: under 2 % of its
particles are nearest its own mean (seed 0: 42 % / 54 % nearest those of 216° and 252°),
and its model decodes 25.6, 8.4 and 20.9 Å off (seeds 0-2); from 126° every state is
within 1.7 Å. The ring coordinates do close, but the arc grown before the first search
lives on in a coordinate of no ring (coordinate 6 ran from +5.8 to -3.9, spread 7.0 at
234° against 1.0-5.3 elsewhere) and the decoder keeps reading it.
(1) Drawing the other coordinates of images with a target towards 0 while the pull lasted
halved the far state's spread but did not join it (epoch 18: spread 3.5, none of its
particles nearest its own mean; from 126°, the states at 0° and 18° split instead).
(2) Taking the domain pull from the motion decoded at the ring points instead of at the
latents taught the decoder the ring within two epochs (pull 124 -> 2 Å^2), but the
latents then shrank to radius 0.2 and stopped following the turn.
(3) Letting the body's segments read only its two ring coordinates (the decoder run again
with the others zeroed) left the arc nowhere else to live, but the ring coordinates then
held it as a line through the centre, and the far state split again.
None was kept: at weight 100 the ring does not bend an arc that the encoder and decoder
already agree on. Nor did (4) a ring ten times heavier (1000; epoch 18, seeds 0 and 2: the
far state's spread 5.2 and 4.3, 0 % and 7 % of its particles nearest its own mean) or (5)
a first search at 0.15 of the run instead of 0.25 (the states at 234° and 252° split).
What fixed it (method version 5) is that the domain turns by the ring's angle itself
(:mod:`.hinge_turns`), so no other coordinate can hold the turn.

The search per batch (:func:`search_batch`) tries turns about the body's
hinge axis every 5° (72), then refines the best by ±2.5° and ±1.25°.

The table is per image, outside the network (and outside any DDP wrapper): every rank
searches its own rows and the tables are summed over ranks, so each rank holds all rows.
"""

from __future__ import annotations

import roma
import torch

from ...imaging.likelihood import ImageLikelihood
from ...imaging.projection import FourierVolume
from ...representations.render import BandBatch
from .body_search import Body, BodyScorer, hinge_rotations
from .network import SphereNetwork
from .restraints import rigidity_loss

__all__ = ["BodyTargets", "search_batch", "LATENT_RING_RADIUS"]

#: Radius of the latent ring (latent units; the prior is N(0, I)).
LATENT_RING_RADIUS = 1.5

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
        #: each body's latent ring: ``phase`` (radians) and ``sign`` (+1 or -1) of the turn
        self.ring_phase = [0.0 for _ in bodies]
        self.ring_sign = [1.0 for _ in bodies]

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

    def turn_angles(self, j: int, index: torch.Tensor) -> torch.Tensor:
        """Body ``j``'s searched turns ``(B,)`` (radians, right-handed about its axis) of
        dataset rows ``index``; 0 where it has no target."""
        rotvecs = roma.rotmat_to_rotvec(self.rotations[j][index])
        return rotvecs @ self.bodies[j].axis.to(rotvecs)

    def fit_rings(self, z_means: torch.Tensor) -> None:
        """Turn and orient each body's ring to the latent means of all images ``(N, zdim)``:
        the ``phase`` and ``sign`` maximising ``|sum_i (z_i,2b + i z_i,2b+1) e^(-i sign theta_i)|``
        over the images with a target (the 2-D Procrustes fit of the ring to the latents)."""
        for j in range(min(len(self.bodies), z_means.shape[1] // 2)):
            act = self.active[j]
            if not bool(act.any()):
                continue
            rows = torch.nonzero(act).squeeze(1)
            theta = self.turn_angles(j, rows).double()
            zc = torch.complex(z_means[rows, 2 * j].double(), z_means[rows, 2 * j + 1].double())
            fits = {sign: (zc * torch.exp(-1j * sign * theta)).sum() for sign in (1.0, -1.0)}
            sign = max(fits, key=lambda k: float(fits[k].abs()))
            self.ring_sign[j], self.ring_phase[j] = sign, float(torch.angle(fits[sign]))

    def latent_ring(self, z_mean: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Per-image ``(B,)`` squared distance (latent units^2) of the latent means
        ``z_mean (B, zdim)`` from each body's ring point (module docstring), over the images
        with a target."""
        out = z_mean.new_zeros(z_mean.shape[0])
        for j in range(min(len(self.bodies), z_mean.shape[1] // 2)):
            act = self.active[j][index].to(z_mean.dtype)
            if not bool(act.any()):
                continue
            theta = self.ring_phase[j] + self.ring_sign[j] * self.turn_angles(j, index).to(z_mean)
            ring = LATENT_RING_RADIUS * torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)
            out = out + act * ((z_mean[:, 2 * j : 2 * j + 2] - ring) ** 2).sum(-1)
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
            "ring_phase": list(self.ring_phase),
            "ring_sign": list(self.ring_sign),
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
        out.ring_phase = [float(v) for v in state.get("ring_phase", out.ring_phase)]
        out.ring_sign = [float(v) for v in state.get("ring_sign", out.ring_sign)]
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
